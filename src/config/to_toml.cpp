// The effective configuration written back as TOML (`relaybait config show`).
#include <sstream>

#include "config/detail.hpp"

namespace relaybait::config {
namespace {

using detail::toml_quote;

std::string string_array(const std::vector<std::string>& values) {
    std::string text = "[";
    for (std::size_t i = 0; i < values.size(); ++i) text += (i == 0 ? "" : ", ") + toml_quote(values[i]);
    return text + "]";
}

std::string_view policy_name(smtp::auth_policy::mode mode) {
    switch (mode) {
        case smtp::auth_policy::mode::accept_all: return "accept-all";
        case smtp::auth_policy::mode::accept_after_failures: return "accept-after-failures";
        case smtp::auth_policy::mode::accept_listed: return "accept-listed";
        case smtp::auth_policy::mode::reject_all: return "reject-all";
    }
    return "accept-all";
}

void write_top_level(std::ostream& out, const settings& s) {
    out << "hostname = " << toml_quote(s.hostname) << '\n'
        << "sensor = " << toml_quote(s.sensor) << '\n'
        << "data_dir = " << toml_quote(s.data_dir.string()) << '\n'
        << "bind = " << string_array(s.bind) << '\n'
        << "port_offset = " << s.port_offset << '\n'
        << "persona = " << toml_quote(s.persona) << '\n'
        << "log_level = " << toml_quote(s.log_level) << '\n'
        << "local_users = " << string_array(s.local_users) << '\n';
}

void write_listeners(std::ostream& out, const settings& s) {
    for (const listener_config& listener : s.listeners)
        out << "\n[listeners." << listener.name << "]\n"
            << "enabled = " << (listener.enabled ? "true" : "false") << '\n'
            << "port = " << listener.port << '\n';
}

void write_limits(std::ostream& out, const smtp::limits& l) {
    out << "\n[limits]\n"
        << "line_length_bytes = " << l.line_length << '\n'
        << "message_size_bytes = " << l.message_size << '\n'
        << "recipients_per_message = " << l.recipients_per_message << '\n'
        << "messages_per_session = " << l.messages_per_session << '\n'
        << "commands_per_session = " << l.commands_per_session << '\n'
        << "soft_error_limit = " << l.soft_error_limit << '\n'
        << "hard_error_limit = " << l.hard_error_limit << '\n'
        << "error_sleep_ms = " << l.error_sleep.count() << '\n'
        << "idle_timeout_seconds = " << l.idle_timeout.count() << '\n'
        << "session_timeout_seconds = " << l.session_timeout.count() << '\n'
        << "sessions_per_ip = " << l.sessions_per_ip << '\n'
        << "sessions_total = " << l.sessions_total << '\n'
        << "transcript_bytes = " << l.transcript_bytes << '\n';
}

void write_auth(std::ostream& out, const smtp::auth_policy& auth) {
    out << "\n[auth]\n"
        << "policy = " << toml_quote(policy_name(auth.policy)) << '\n'
        << "failures_before_accept = " << auth.failures_before_accept << '\n';
    for (const auto& [user, password] : auth.accepted_pairs)
        out << "\n[[auth.accept]]\nuser = " << toml_quote(user) << "\npassword = " << toml_quote(password) << '\n';
}

}  // namespace

std::string to_toml(const settings& effective) {
    std::ostringstream out;
    write_top_level(out, effective);
    write_listeners(out, effective);
    out << "\n[tls]\n"
        << "certificate = " << toml_quote(effective.tls.certificate.string()) << '\n'
        << "private_key = " << toml_quote(effective.tls.private_key.string()) << '\n';
    write_limits(out, effective.limits);
    write_auth(out, effective.auth);
    out << "\n[events]\n"
        << "rotate_bytes = " << effective.events.rotate_bytes << '\n'
        << "keep_files = " << effective.events.keep_files << '\n';
    return std::move(out).str();
}

}  // namespace relaybait::config
