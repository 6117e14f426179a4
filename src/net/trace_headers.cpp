#include "net/trace_headers.hpp"

#include <ctime>

namespace relaybait::net {

namespace {

// RFC 3848 protocol names, as Postfix writes them in "with ...".
std::string_view protocol_name(const trace_facts& facts) {
    const bool esmtp = facts.envelope.helo_verb != "HELO";
    const bool tls = facts.tls.has_value();
    const bool auth = facts.envelope.auth.has_value() && facts.envelope.auth->accepted;
    if (!esmtp) return "SMTP";
    if (tls && auth) return "ESMTPSA";
    if (tls) return "ESMTPS";
    if (auth) return "ESMTPA";
    return "ESMTP";
}

std::string cipher_bits(std::string_view cipher) {
    if (cipher.find("256") != std::string_view::npos || cipher.find("CHACHA20") != std::string_view::npos) return "256/256";
    if (cipher.find("128") != std::string_view::npos) return "128/128";
    return "";
}

std::string recipient_list(const smtp::envelope& envelope) {
    std::string all;
    for (const auto& rcpt : envelope.recipients) {
        if (!all.empty()) all += ", ";
        all += "<" + rcpt.address + ">";
    }
    return all;
}

}  // namespace

std::string make_trace_headers(const trace_facts& facts) {
    const auto& conn = facts.connection;
    const auto& env = facts.envelope;
    // Appended piece by piece into one reserved string (this runs for every message).
    std::string out;
    out.reserve(640 + conn.local_hostname.size() + env.helo_name.size() * 2 + env.mail_from.size() +
                env.mail_parameters.size() + env.recipients.size() * 64);
    out += "Received: from ";
    if (env.helo_name.empty()) out += "unknown";
    else out += header_safe(env.helo_name, 200);
    out += " (unknown [";
    out += conn.peer_ip;
    out += "])\r\n";
    if (facts.tls) {
        const std::string bits = cipher_bits(facts.tls->cipher);
        out += "\t(using ";
        out += facts.tls->version;
        out += " with cipher ";
        out += facts.tls->cipher;
        if (!bits.empty()) {
            out += " (";
            out += bits;
            out += " bits)";
        }
        out += ")\r\n\t(No client certificate requested)\r\n";
    }
    out += "\tby ";
    out += conn.local_hostname;
    out += " (Postfix) with ";
    out += protocol_name(facts);
    out += " id ";
    out += facts.queue_id;
    // Postfix names the recipient only when there is exactly one; otherwise the date folds
    // onto its own continuation line.
    if (env.recipients.size() == 1) {
        out += "\r\n\tfor <";
        out += header_safe(env.recipients.front().address, 300);
        out += ">; ";
    } else {
        out += ";\r\n\t";
    }
    out += rfc5322_date(facts.received_at);
    out += "\r\n";

    const std::string_view prefix(trace_header_prefix);
    out += prefix;
    out += "Session: ";
    out += facts.session_id;
    out += "\r\n";
    out += prefix;
    out += "Listener: ";
    out += smtp::to_string(conn.listener);
    out += "\r\n";
    out += prefix;
    out += "Peer: ";
    out += conn.peer_ip;
    out += ':';
    out += std::to_string(conn.peer_port);
    out += "\r\n";
    out += prefix;
    out += "Helo: ";
    out += header_safe(env.helo_verb + " " + env.helo_name);
    out += "\r\n";
    out += prefix;
    out += "Mail-From: <";
    out += header_safe(env.mail_from);
    out += '>';
    if (!env.mail_parameters.empty()) {
        out += ' ';
        out += header_safe(env.mail_parameters);
    }
    out += "\r\n";
    out += prefix;
    out += "Rcpt-To: ";
    out += header_safe(recipient_list(env), 64 * 1024);
    out += "\r\n";
    if (env.auth) {
        out += prefix;
        out += "Auth-User: ";
        out += header_safe(env.auth->username);
        out += "\r\n";
    }
    if (facts.tls) {
        out += prefix;
        out += "TLS: ";
        out += facts.tls->version;
        out += ' ';
        out += facts.tls->cipher;
        out += "\r\n";
    }
    return out;
}

}  // namespace relaybait::net
