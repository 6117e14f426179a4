#pragma once
// Internals of the configuration component shared by its source files (not a public contract).
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace relaybait::config::detail {

// Where a value was last set, to name it in errors found after merging (ports + offset, ...).
struct location {
    std::string origin;
    std::size_t line = 0;
    std::string key;  // as the operator wrote it: "port_offset" in a file, "--port-offset" on the command line
};

class provenance {
public:
    void set(const std::string& key, location where) { where_[key] = std::move(where); }
    // Where `key` was set; the built-in defaults when nobody set it.
    location find(const std::string& key) const;
    [[noreturn]] void fail(const std::string& key, std::string problem) const;

private:
    std::map<std::string, location, std::less<>> where_;
};

// Parse `toml_text` onto `target`, recording every key set in `where`. Per-key checks only.
void apply_toml(settings& target, std::string_view toml_text, const std::string& origin, provenance& where);

// Checks that span several keys; call once everything is merged.
void validate_merged(const settings& merged, const provenance& where);

// Single-value checks shared by the TOML reader and the command-line overrides.
// Each returns an empty string when the value is fine, else the problem.
std::string check_hostname(std::string_view name);
std::string check_ip_address(std::string_view address);
std::string check_ipv4_address(std::string_view address);
std::string check_ipv6_address(std::string_view address);
std::string check_url(std::string_view url);               // http:// or https:// with a host
std::string check_dns_server(std::string_view server);     // "ip", "ip:port", "[v6]:port"
std::string check_host_port(std::string_view host_port);   // "host:port", "[v6]:port"
std::string check_mail_address(std::string_view address);  // local@domain

// TOML basic string with every control character escaped.
std::string toml_quote(std::string_view text);

}  // namespace relaybait::config::detail
