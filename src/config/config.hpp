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
