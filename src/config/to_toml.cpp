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

template <typename Integer>
std::string integer_array(const std::vector<Integer>& values) {
    std::string text = "[";
    for (std::size_t i = 0; i < values.size(); ++i) text += (i == 0 ? "" : ", ") + std::to_string(values[i]);
    return text + "]";
}

const char* boolean(bool value) { return value ? "true" : "false"; }

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
            << "enabled = " << boolean(listener.enabled) << '\n'
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

void write_rules(std::ostream& out, const rules_config& rules) {
    out << "\n[rules]\n";
    // Not a key: which rules load() found (the file, rules.toml beside --config, or the embedded ones).
    if (!rules.resolved_file.empty())
        out << "# in use: " << toml_quote(rules.resolved_file.string()) << '\n';
    out << "file = " << toml_quote(rules.file.string()) << '\n'
        << "max_scan_bytes = " << rules.max_scan_bytes << '\n';
}

void write_identity(std::ostream& out, const identity_config& identity) {
    out << "\n[identity]\n"
        << "ipv4 = " << string_array(identity.ipv4) << '\n'
        << "ipv6 = " << string_array(identity.ipv6) << '\n'
        << "interface_addresses = " << boolean(identity.interface_addresses) << '\n'
        << "discover = " << boolean(identity.discover) << '\n'
        << "discover_urls = " << string_array(identity.discover_urls) << '\n'
        << "discover_timeout_ms = " << identity.discover_timeout_ms << '\n';
}

void write_relay(std::ostream& out, const relay_config& relay) {
    out << "\n[relay]\n"
        << "enabled = " << boolean(relay.enabled) << '\n'
        << "daily = " << relay.daily << '\n'
        << "per_recipient_daily = " << relay.per_recipient_daily << '\n'
        << "per_sender_daily = " << relay.per_sender_daily << '\n'
        << "per_client_ip_daily = " << relay.per_client_ip_daily << '\n'
        << "per_domain_daily = " << relay.per_domain_daily << '\n'
        << "max_size_bytes = " << relay.max_size_bytes << '\n'
        << "max_recipients = " << relay.max_recipients << '\n'
        << "test_mode = " << boolean(relay.test_mode) << '\n'
        << "test_server = " << toml_quote(relay.test_server) << '\n'
        << "test_recipient = " << toml_quote(relay.test_recipient) << '\n'
        << "ports = " << integer_array(relay.ports) << '\n'
        << "force_ipv4_domains = " << string_array(relay.force_ipv4_domains) << '\n'
        << "dns_servers = " << string_array(relay.dns_servers) << '\n'
        << "dns_timeout_ms = " << relay.dns_timeout_ms << '\n'
        << "max_mx_hosts = " << relay.max_mx_hosts << '\n'
        << "max_attempts = " << relay.max_attempts << '\n'
        << "retry_base_seconds = " << relay.retry_base_seconds << '\n'
        << "retry_max_seconds = " << relay.retry_max_seconds << '\n'
        << "poll_interval_ms = " << relay.poll_interval_ms << '\n'
        << "connect_timeout_seconds = " << relay.connect_timeout_seconds << '\n'
        << "command_timeout_seconds = " << relay.command_timeout_seconds << '\n'
        << "starttls = " << boolean(relay.starttls) << '\n'
        << "allow_private_destinations = " << boolean(relay.allow_private_destinations) << '\n';
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
    write_rules(out, effective.rules);
    write_identity(out, effective.identity);
    write_relay(out, effective.relay);
    return std::move(out).str();
}

}  // namespace relaybait::config
