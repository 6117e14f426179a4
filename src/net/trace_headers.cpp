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

std::string rfc5322_date(std::chrono::system_clock::time_point when) {
    const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[64];
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S +0000 (UTC)", &utc);
    return text;
}

std::string make_trace_headers(const trace_facts& facts) {
    const auto& conn = facts.connection;
    const auto& env = facts.envelope;
    const std::string helo = env.helo_name.empty() ? std::string("unknown") : header_safe(env.helo_name, 200);
    std::string out;
    out += "Received: from " + helo + " (unknown [" + conn.peer_ip + "])\r\n";
    if (facts.tls) {
        const std::string bits = cipher_bits(facts.tls->cipher);
        out += "\t(using " + facts.tls->version + " with cipher " + facts.tls->cipher;
        if (!bits.empty()) out += " (" + bits + " bits)";
        out += ")\r\n\t(No client certificate requested)\r\n";
    }
    out += "\tby " + conn.local_hostname + " (Postfix) with " + std::string(protocol_name(facts)) + " id " +
           std::string(facts.queue_id);
    // Postfix names the recipient only when there is exactly one; otherwise the date folds
    // onto its own continuation line.
    if (env.recipients.size() == 1) {
        out += "\r\n\tfor <" + header_safe(env.recipients.front().address, 300) + ">; ";
    } else {
        out += ";\r\n\t";
    }
    out += rfc5322_date(facts.received_at) + "\r\n";

    const std::string prefix(trace_header_prefix);
    out += prefix + "Session: " + std::string(facts.session_id) + "\r\n";
    out += prefix + "Listener: " + std::string(smtp::to_string(conn.listener)) + "\r\n";
    out += prefix + "Peer: " + conn.peer_ip + ":" + std::to_string(conn.peer_port) + "\r\n";
    out += prefix + "Helo: " + header_safe(env.helo_verb + " " + env.helo_name) + "\r\n";
    out += prefix + "Mail-From: <" + header_safe(env.mail_from) + ">" +
           (env.mail_parameters.empty() ? "" : " " + header_safe(env.mail_parameters)) + "\r\n";
    out += prefix + "Rcpt-To: " + header_safe(recipient_list(env), 64 * 1024) + "\r\n";
    if (env.auth) out += prefix + "Auth-User: " + header_safe(env.auth->username) + "\r\n";
    if (facts.tls) out += prefix + "TLS: " + facts.tls->version + " " + facts.tls->cipher + "\r\n";
    return out;
}

}  // namespace relaybait::net
