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
#include <vector>

#include "smtp/engine.hpp"
#include "smtp/limits.hpp"

namespace relaybait::config {

class config_error : public std::runtime_error {
public:
    config_error(std::string file, std::size_t line, std::string key, std::string problem);
    const std::string& file() const { return file_; }
    std::size_t line() const { return line_; }
    const std::string& key() const { return key_; }
    // what(): "FILE:LINE: KEY: PROBLEM"
private:
    std::string file_;
    std::size_t line_;
    std::string key_;
};

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
    std::vector<listener_config> listeners;     // smtp 25, smtps 465, submission 587
    tls_config tls;
    std::string persona = "postfix-3.7";
    smtp::limits limits;
    smtp::auth_policy auth;
    std::vector<std::string> local_users;       // users that exist at the hostname/localhost
    event_log_config events;
    std::string log_level = "info";

    std::uint16_t effective_port(const listener_config& listener) const;  // port + offset, checked
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

// Defaults, then the file (if any), then overrides. Throws config_error.
settings load(const overrides& cli);

}  // namespace relaybait::config
