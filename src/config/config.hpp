#pragma once
// relaybait's configuration: the embedded defaults (relaybait.example.toml, compiled in),
// overlaid by the operator's TOML file, overlaid by command-line flags. Every key is
// documented in relaybait.example.toml. Unknown keys and bad values are errors that name
// the file, the line and the key (config_error), and `serve` exits with code 2.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/engine.hpp"
#include "smtp/limits.hpp"

namespace relaybait::config {

class config_error : public std::runtime_error {
public:
    // what(): "FILE:LINE: KEY: PROBLEM". A part that does not apply is left out: line 0 (the
    // command line, a whole file) gives "FILE: KEY: PROBLEM", an empty key "FILE:LINE: PROBLEM".
    config_error(std::string file, std::size_t line, std::string key, std::string problem);
    // TOML syntax errors: "FILE:LINE:COLUMN: PROBLEM" (key empty).
    config_error(std::string file, std::size_t line, std::size_t column, std::string problem);
    const std::string& file() const { return file_; }
    std::size_t line() const { return line_; }
    std::size_t column() const { return column_; }  // 0 unless a syntax error
    const std::string& key() const { return key_; }
    const std::string& problem() const { return problem_; }

private:
    std::string file_;
    std::size_t line_;
    std::size_t column_ = 0;
    std::string key_;
    std::string problem_;
};

// Names used for `origin` in errors about values that did not come from a file.
inline constexpr std::string_view builtin_origin = "<built-in defaults>";
inline constexpr std::string_view command_line_origin = "<command line>";

struct listener_config {
    std::string name;  // smtp, smtps, submission
    smtp::listener_kind kind = smtp::listener_kind::smtp;
    bool enabled = true;
    std::uint16_t port = 25;  // before --port-offset
};

struct tls_config {
    std::filesystem::path certificate;  // PEM; empty = generate a self-signed one into DATA/tls/
    std::filesystem::path private_key;
};

struct event_log_config {
    std::uint64_t rotate_bytes = 100u << 20;
    unsigned keep_files = 10;
};

// The rules file (docs/rules.md). Resolved by load(): an explicit `file` (relative to the
// working directory) must exist; with none, "rules.toml" beside the --config file is used when
// it exists, else the embedded defaults (rules.example.toml). `resolved_file` empty = embedded.
struct rules_config {
    std::filesystem::path file;           // as configured ("" = default)
    std::filesystem::path resolved_file;  // filled by load(); empty = the embedded default rules
    std::uint64_t max_scan_bytes = 4u << 20;  // bytes of a message parsed for the data hook
};

// The honeypot's own public addresses, the values of $self.ip in rules (probes carry them).
struct identity_config {
    std::vector<std::string> ipv4;  // IPv4 literals
    std::vector<std::string> ipv6;  // IPv6 literals
    bool interface_addresses = true;  // add the global (non-loopback, non-link-local) addresses of the host's interfaces
    bool discover = false;            // ask discover_urls at start for the public address(es)
    std::vector<std::string> discover_urls = {"https://api.ipify.org", "https://api6.ipify.org"};
    std::uint32_t discover_timeout_ms = 5000;  // per URL; 100 to 60000
};

// The relay of probes (docs/relay.md). Plain data here; serve turns it into relay::relay_limits
// and relay::relay_service_options. No rule can lift these caps.
struct relay_config {
    bool enabled = true;  // the kill switch
    std::uint32_t daily = 20;
    std::uint32_t per_recipient_daily = 3;
    std::uint32_t per_sender_daily = 5;
    std::uint32_t per_client_ip_daily = 5;
    std::uint32_t per_domain_daily = 10;
    std::uint64_t max_size_bytes = 1u << 20;
    std::uint32_t max_recipients = 5;
    bool test_mode = false;       // every relay goes to test_server / test_recipient
    std::string test_server;      // "host:port" ("[::1]:2525"); required with test_mode
    std::string test_recipient;   // the operator's address; required with test_mode
    std::vector<std::uint16_t> ports = {25};  // delivery ports in order; 465 = implicit TLS
    std::vector<std::string> force_ipv4_domains = {"gmail.com", "googlemail.com", "google.com"};
    std::vector<std::string> dns_servers;     // "ip[:port]"; empty = /etc/resolv.conf
    std::uint32_t dns_timeout_ms = 3000;
    std::uint32_t max_mx_hosts = 3;
    std::uint32_t max_attempts = 5;
    std::uint32_t retry_base_seconds = 300;
    std::uint32_t retry_max_seconds = 14400;
    std::uint32_t poll_interval_ms = 5000;
    std::uint32_t connect_timeout_seconds = 30;
    std::uint32_t command_timeout_seconds = 120;
    bool starttls = true;  // opportunistic STARTTLS when the MX offers it
    // Connect to MX addresses that are not globally routable (loopback, RFC 1918, link-local,
    // ...). Off: an MX record pointing inside is refused (SSRF). Only for test setups.
    bool allow_private_destinations = false;
};

struct settings {
    std::string hostname = "mail.example.com";  // banner, EHLO, Received, certificate
    std::string sensor;                         // sensor name in events; defaults to hostname
    std::vector<std::string> bind = {"::"};     // "::" listens on IPv4 and IPv6
    std::int32_t port_offset = 0;
    std::filesystem::path data_dir = "relaybait-data";
    std::vector<listener_config> listeners = {  // always these three, in this order
        {"smtp", smtp::listener_kind::smtp, true, 25},
        {"smtps", smtp::listener_kind::smtps, true, 465},
        {"submission", smtp::listener_kind::submission, true, 587},
    };
    tls_config tls;
    std::string persona = "postfix-3.7";
    smtp::limits limits;
    smtp::auth_policy auth;
    // Users that exist at the hostname/localhost: the accounts and aliases of a stock Debian 12 mail host.
    std::vector<std::string> local_users = {
        "root", "postmaster", "abuse", "staff", "daemon", "bin", "sys", "sync", "games", "man", "lp",
        "mail", "news", "uucp", "proxy", "www-data", "backup", "list", "irc", "nobody", "postfix",
    };
    event_log_config events;
    std::string log_level = "info";
    rules_config rules;
    identity_config identity;
    relay_config relay;
    std::filesystem::path config_file;  // the --config file, empty when none (filled by load())

    std::uint16_t effective_port(const listener_config& listener) const;  // port + offset, checked
    const std::string& sensor_name() const { return sensor.empty() ? hostname : sensor; }
};

// Command-line values that override the file.
struct overrides {
    std::optional<std::filesystem::path> config_file;
    std::optional<std::filesystem::path> data_dir;
    std::optional<std::string> bind;
    std::optional<std::int32_t> port_offset;
    std::optional<std::string> hostname;
    std::optional<bool> test_mode;  // serve --test-mode: relay.test_mode = true
};

// The embedded default configuration text (relaybait.example.toml).
std::string_view default_config_text();

// Parse one TOML document onto `base`; `origin` names it in errors. Throws config_error.
settings apply_toml(settings base, std::string_view toml_text, const std::string& origin);

// Defaults, then the file (if any), then overrides, then the checks that span several keys
// (ports + offset, certificate and key together). Throws config_error.
settings load(const overrides& cli);

// The effective configuration as a TOML document that apply_toml() reads back to the same
// settings (`relaybait config show`).
std::string to_toml(const settings& effective);

}  // namespace relaybait::config
