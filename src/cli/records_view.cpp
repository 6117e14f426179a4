#include "cli/records_view.hpp"

#include <boost/json/serialize.hpp>

#include "cli/table.hpp"
#include "common/text.hpp"

namespace relaybait::cli {
namespace {

namespace json = boost::json;

std::string recipients_cell(const std::vector<std::string>& recipients) {
    if (recipients.empty()) return "";
    if (recipients.size() == 1) return recipients.front();
    return recipients.front() + " (+" + std::to_string(recipients.size() - 1) + ")";
}

std::string endpoint(const std::string& ip, std::uint16_t port) {
    if (port == 0) return ip;
    return ip.find(':') != std::string::npos ? "[" + ip + "]:" + std::to_string(port) : ip + ":" + std::to_string(port);
}

std::string tls_text(const std::string& version, const std::string& cipher) {
    return version.empty() ? "no" : version + " " + cipher;
}

json::array json_strings(const std::vector<std::string>& values) {
    json::array array;
    for (const auto& value : values) array.emplace_back(json_safe(value));
    return array;
}

// Appends one valid UTF-8 sequence at text[i] to out and returns its length, or 0 when invalid.
std::size_t copy_utf8(std::string_view text, std::size_t i, std::string& out) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const std::size_t length = lead < 0x80 ? 1 : lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3
                                                   : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
    if (length == 0 || i + length > text.size()) return 0;
    for (std::size_t k = 1; k < length; ++k)
        if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return 0;
    const auto second = static_cast<unsigned char>(length > 1 ? text[i + 1] : 0);
    if ((lead == 0xe0 && second < 0xa0) || (lead == 0xed && second > 0x9f) || (lead == 0xf0 && second < 0x90) ||
        (lead == 0xf4 && second > 0x8f))
        return 0;  // overlong, surrogate, above U+10FFFF
    out.append(text.substr(i, length));
    return length;
}

}  // namespace

std::string short_time(const store::timestamp& at) {
    if (at.size() < 19 || at[10] != 'T') return at;
    std::string shown = at.substr(0, 19);
    shown[10] = ' ';
    return shown;
}

std::string json_safe(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    for (std::size_t i = 0; i < bytes.size();) {
        const std::size_t length = copy_utf8(bytes, i, out);
        if (length == 0) {
            out += "\uFFFD";
            ++i;
        } else {
            i += length;
        }
    }
    return out;
}

void render_message_list(std::ostream& out, const std::vector<store::message_record>& messages) {
    table view({{"ID", 12, true}, {"RECEIVED", 19}, {"PEER", 39}, {"LISTENER", 10}, {"FROM", 40}, {"TO", 40},
                {"SIZE", 12, true}, {"SUBJECT", 60}});
    for (const auto& m : messages)
        view.add_row({std::to_string(m.id), short_time(m.received_at), m.peer_ip, m.listener, m.mail_from,
                      recipients_cell(m.recipients), std::to_string(m.size), m.headers.subject});
    view.render(out);
}

void render_message(std::ostream& out, const store::message_record& m) {
    render_fields(out, {
                           {"id", std::to_string(m.id)},
                           {"queue id", m.queue_id},
                           {"received", m.received_at},
                           {"session", m.session_id},
                           {"peer", endpoint(m.peer_ip, m.peer_port)},
                           {"listener", m.listener},
                           {"helo", m.helo_name},
                           {"mail from", "<" + m.mail_from + ">" + (m.mail_parameters.empty() ? "" : " " + m.mail_parameters)},
                           {"rcpt to", text::join(m.recipients, ", ")},
                           {"auth", m.auth_username},
                           {"tls", tls_text(m.tls_version, m.tls_cipher)},
                           {"via", m.via_bdat ? "BDAT" : "DATA"},
                           {"size", std::to_string(m.size)},
                           {"sha256", m.sha256},
                           {"folder", m.folder.empty() ? "inbox" : m.folder},
                           {"file", m.maildir_path},
                           {"subject", m.headers.subject},
                           {"from", m.headers.from},
                           {"to", m.headers.to},
                           {"date", m.headers.date},
                           {"message-id", m.headers.message_id},
                           {"x-mailer", m.headers.x_mailer},
                           {"user-agent", m.headers.user_agent},
                       });
}

void render_session_list(std::ostream& out, const std::vector<store::session_record>& sessions) {
    table view({{"ID", 16}, {"STARTED", 19}, {"PEER", 47}, {"LISTENER", 10}, {"HELO", 40}, {"TLS", 8},
                {"CMDS", 6, true}, {"MSGS", 6, true}, {"OUTCOME", 16}});
    for (const auto& s : sessions)
        view.add_row({s.id, short_time(s.started_at), endpoint(s.peer_ip, s.peer_port), s.listener, s.helo_name,
                      s.tls_version.empty() ? "-" : s.tls_version, std::to_string(s.commands), std::to_string(s.messages),
                      s.outcome});
    view.render(out);
}

void render_session(std::ostream& out, const store::session_record& s) {
    render_fields(out, {
                           {"id", s.id},
                           {"sensor", s.sensor},
                           {"listener", s.listener},
                           {"peer", endpoint(s.peer_ip, s.peer_port)},
                           {"local", endpoint(s.local_ip, s.local_port)},
                           {"started", s.started_at},
                           {"ended", s.ended_at.value_or("")},
                           {"helo", s.helo_verb.empty() ? "" : s.helo_verb + " " + s.helo_name},
                           {"tls", tls_text(s.tls_version, s.tls_cipher)},
                           {"bytes in/out", std::to_string(s.bytes_in) + " / " + std::to_string(s.bytes_out)},
                           {"commands", std::to_string(s.commands)},
                           {"errors", std::to_string(s.errors)},
                           {"messages", std::to_string(s.messages)},
                           {"outcome", s.outcome},
                       });
    out << "\ntranscript:\n";
    for (const auto& line : s.transcript)
        out << escape_for_terminal(line.at) << "  " << escape_for_terminal(std::string_view(&line.direction, 1)) << ": "
            << escape_for_terminal(line.text) << '\n';
    if (s.transcript_truncated) out << "(transcript truncated: the session sent more than was kept)\n";
}

void render_credential_list(std::ostream& out, const std::vector<store::credential_record>& credentials) {
    table view({{"ID", 12, true}, {"AT", 19}, {"PEER", 39}, {"LISTENER", 10}, {"MECHANISM", 9}, {"USERNAME", 40},
                {"PASSWORD", 40}, {"ACCEPTED", 8}});
    for (const auto& c : credentials)
        view.add_row({std::to_string(c.id), short_time(c.at), c.peer_ip, c.listener, c.mechanism, c.username, c.password,
                      c.accepted ? "yes" : "no"});
    view.render(out);
}

json::value to_json(const store::message_record& m) {
    return json::object{
        {"id", m.id},
        {"queue_id", json_safe(m.queue_id)},
        {"session_id", json_safe(m.session_id)},
        {"received_at", json_safe(m.received_at)},
        {"peer_ip", json_safe(m.peer_ip)},
        {"peer_port", m.peer_port},
        {"listener", json_safe(m.listener)},
        {"helo_name", json_safe(m.helo_name)},
        {"mail_from", json_safe(m.mail_from)},
        {"mail_parameters", json_safe(m.mail_parameters)},
        {"recipients", json_strings(m.recipients)},
        {"auth_username", json_safe(m.auth_username)},
        {"tls_version", json_safe(m.tls_version)},
        {"tls_cipher", json_safe(m.tls_cipher)},
        {"via_bdat", m.via_bdat},
        {"folder", json_safe(m.folder)},
        {"maildir_path", json_safe(m.maildir_path)},
        {"size", m.size},
        {"sha256", json_safe(m.sha256)},
        {"headers", json::object{{"subject", json_safe(m.headers.subject)},
                                 {"from", json_safe(m.headers.from)},
                                 {"to", json_safe(m.headers.to)},
                                 {"date", json_safe(m.headers.date)},
                                 {"message_id", json_safe(m.headers.message_id)},
                                 {"x_mailer", json_safe(m.headers.x_mailer)},
                                 {"user_agent", json_safe(m.headers.user_agent)}}},
    };
}

json::value to_json(const store::session_record& s) {
    json::array transcript;
    for (const auto& line : s.transcript)
        transcript.push_back(json::object{{"at", json_safe(line.at)},
                                          {"direction", json_safe(std::string_view(&line.direction, 1))},
                                          {"text", json_safe(line.text)}});
    json::object object{
        {"id", json_safe(s.id)},
        {"sensor", json_safe(s.sensor)},
        {"listener", json_safe(s.listener)},
        {"peer_ip", json_safe(s.peer_ip)},
        {"peer_port", s.peer_port},
        {"local_ip", json_safe(s.local_ip)},
        {"local_port", s.local_port},
        {"started_at", json_safe(s.started_at)},
        {"ended_at", s.ended_at ? json::value(json_safe(*s.ended_at)) : json::value(nullptr)},
        {"helo_verb", json_safe(s.helo_verb)},
        {"helo_name", json_safe(s.helo_name)},
        {"tls_version", json_safe(s.tls_version)},
        {"tls_cipher", json_safe(s.tls_cipher)},
        {"bytes_in", s.bytes_in},
        {"bytes_out", s.bytes_out},
        {"commands", s.commands},
        {"errors", s.errors},
        {"messages", s.messages},
        {"outcome", json_safe(s.outcome)},
        {"transcript", std::move(transcript)},
        {"transcript_truncated", s.transcript_truncated},
    };
    return object;
}

json::value to_json(const store::credential_record& c) {
    return json::object{
        {"id", c.id},
        {"session_id", json_safe(c.session_id)},
        {"peer_ip", json_safe(c.peer_ip)},
        {"at", json_safe(c.at)},
        {"listener", json_safe(c.listener)},
        {"mechanism", json_safe(c.mechanism)},
        {"authzid", json_safe(c.authzid)},
        {"username", json_safe(c.username)},
        {"password", json_safe(c.password)},
        {"challenge", json_safe(c.challenge)},
        {"raw", json_safe(c.raw)},
        {"accepted", c.accepted},
    };
}

// boost::json escapes only C0 controls: C1 (U+009B CSI), DEL and bidi controls would reach the
// terminal raw. They become \uXXXX escapes (the same decoded values).
void print_json(std::ostream& out, const json::value& document) {
    out << escape_json_for_terminal(json::serialize(document)) << '\n';
}

}  // namespace relaybait::cli
