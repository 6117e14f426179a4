// Checks of single values shared by the file reader and the command line, and the checks
// that span several keys, run once everything is merged.
#include <arpa/inet.h>

#include <cstdio>
#include <optional>

#include "common/text.hpp"
#include "config/detail.hpp"

namespace relaybait::config::detail {
namespace {

bool is_label_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

std::string check_label(std::string_view label) {
    if (label.empty()) return "must not have an empty label (two dots, or a dot at either end)";
    if (label.size() > 63) return "has a label longer than 63 characters";
    if (label.front() == '-' || label.back() == '-') return "has a label that starts or ends with '-'";
    for (char c : label)
        if (!is_label_char(c)) return "may only contain letters, digits, '-' and '.'";
    return {};
}

bool inet_literal(int family, std::string_view address) {
    const std::string text(address);
    unsigned char buffer[16];
    return inet_pton(family, text.c_str(), buffer) == 1;
}

// Port text ("25"): nullopt when not 1 to 5 digits, else the number (which may be out of range).
std::optional<std::uint32_t> port_number(std::string_view text) {
    if (text.empty() || text.size() > 5) return std::nullopt;
    std::uint32_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<std::uint32_t>(c - '0');
    }
    return value;
}

bool printable_ascii(std::string_view text) {
    for (unsigned char c : text)
        if (c < 0x21 || c > 0x7e) return false;
    return true;
}

// "[v6]:port" split into the address and the port text; nullopt when not of that shape.
std::optional<std::pair<std::string_view, std::string_view>> bracketed(std::string_view text) {
    if (text.empty() || text.front() != '[') return std::nullopt;
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
    return std::pair{text.substr(1, close - 1), text.substr(close + 2)};
}

std::string port_problem(std::string_view whole, std::string_view port) {
    const auto number = port_number(port);
    if (!number) return toml_quote(whole) + " has no valid port number";
    if (*number < 1 || *number > 65535) return toml_quote(whole) + " has a port outside 1 to 65535";
    return {};
}

void check_listener_port(const settings& merged, const listener_config& listener, const provenance& where) {
    const std::int64_t port = std::int64_t{listener.port} + merged.port_offset;
    if (port >= 1 && port <= 65535) return;
    where.fail("port_offset", "listeners." + listener.name + ".port " + std::to_string(listener.port) + " + port_offset " +
                                  std::to_string(merged.port_offset) + " = " + std::to_string(port) +
                                  " is outside 1 to 65535");
}

bool set_by_builtin(const provenance& where, const std::string& key) {
    return where.find(key).origin == builtin_origin;
}

void check_relay(const relay_config& relay, const provenance& where) {
    if (relay.test_mode && relay.test_server.empty())
        where.fail("relay.test_mode", "test mode needs relay.test_server (\"host:port\") to deliver to");
    if (relay.test_mode && relay.test_recipient.empty())
        where.fail("relay.test_mode", "test mode needs relay.test_recipient (the operator's address)");
    if (relay.retry_base_seconds > relay.retry_max_seconds) {
        // Name the key the operator wrote; the base when both (or neither) came from a file.
        const bool blame_max = set_by_builtin(where, "relay.retry_base_seconds") &&
                               !set_by_builtin(where, "relay.retry_max_seconds");
        where.fail(blame_max ? "relay.retry_max_seconds" : "relay.retry_base_seconds",
                   "relay.retry_base_seconds " + std::to_string(relay.retry_base_seconds) +
                       " is greater than relay.retry_max_seconds " + std::to_string(relay.retry_max_seconds));
    }
}

}  // namespace

location provenance::find(const std::string& key) const {
    auto found = where_.find(key);
    if (found != where_.end()) return found->second;
    return {std::string(builtin_origin), 0, key};
}

void provenance::fail(const std::string& key, std::string problem) const {
    location at = find(key);
    throw config_error(at.origin, at.line, at.key, std::move(problem));
}

std::string check_hostname(std::string_view name) {
    if (name.empty()) return "must not be empty";
    if (name.size() > 253) return "must be at most 253 characters";
    for (std::size_t start = 0;;) {
        const std::size_t dot = name.find('.', start);
        const std::string problem = check_label(name.substr(start, dot == std::string_view::npos ? dot : dot - start));
        if (!problem.empty()) return "is not a valid hostname: it " + problem;
        if (dot == std::string_view::npos) return {};
        start = dot + 1;
    }
}

std::string check_ip_address(std::string_view address) {
    const std::string text(address);
    unsigned char buffer[16];
    if (inet_pton(AF_INET, text.c_str(), buffer) == 1 || inet_pton(AF_INET6, text.c_str(), buffer) == 1) return {};
    return "\"" + text + "\" is not an IPv4 or IPv6 address";
}

std::string check_ipv4_address(std::string_view address) {
    if (inet_literal(AF_INET, address)) return {};
    return toml_quote(address) + " is not an IPv4 address";
}

std::string check_ipv6_address(std::string_view address) {
    if (inet_literal(AF_INET6, address)) return {};
    return toml_quote(address) + " is not an IPv6 address";
}

std::string check_url(std::string_view url) {
    const std::string problem = toml_quote(url) + " is not an http:// or https:// URL with a host";
    std::string_view rest;
    if (text::istarts_with(url, "http://"))
        rest = url.substr(7);
    else if (text::istarts_with(url, "https://"))
        rest = url.substr(8);
    else
        return problem;
    if (!printable_ascii(url)) return problem;
    std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
    if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
    if (authority.empty()) return problem;
    if (authority.front() == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos || !inet_literal(AF_INET6, authority.substr(1, close - 1))) return problem;
        if (close + 1 == authority.size()) return {};
        if (authority[close + 1] != ':') return problem;
        return port_problem(url, authority.substr(close + 2));
    }
    const std::size_t colon = authority.find(':');
    if (colon == 0) return problem;
    if (colon == std::string_view::npos) return {};
    return port_problem(url, authority.substr(colon + 1));
}

std::string check_dns_server(std::string_view server) {
    const std::string problem = toml_quote(server) + " is not \"ip\", \"ip:port\" or \"[ipv6]:port\"";
    if (auto parts = bracketed(server)) {
        if (!inet_literal(AF_INET6, parts->first)) return problem;
        return port_problem(server, parts->second);
    }
    if (inet_literal(AF_INET, server) || inet_literal(AF_INET6, server)) return {};
    const std::size_t colon = server.find(':');
    if (colon == std::string_view::npos || server.find(':', colon + 1) != std::string_view::npos) return problem;
    if (!inet_literal(AF_INET, server.substr(0, colon))) return problem;
    return port_problem(server, server.substr(colon + 1));
}

std::string check_host_port(std::string_view host_port) {
    const std::string problem = "must be \"host:port\" (IPv6: \"[address]:port\"), got " + toml_quote(host_port);
    if (auto parts = bracketed(host_port)) {
        if (!inet_literal(AF_INET6, parts->first)) return problem;
        return port_problem(host_port, parts->second);
    }
    const std::size_t colon = host_port.find(':');
    if (colon == std::string_view::npos || host_port.find(':', colon + 1) != std::string_view::npos) return problem;
    const std::string_view host = host_port.substr(0, colon);
    if (const std::string bad = check_hostname(host); !bad.empty()) return "host " + toml_quote(host) + " " + bad;
    return port_problem(host_port, host_port.substr(colon + 1));
}

std::string check_mail_address(std::string_view address) {
    const std::string problem = "must look like local@domain, got " + toml_quote(address);
    const std::size_t at = address.rfind('@');
    if (at == std::string_view::npos || at == 0 || at > 64) return problem;
    const std::string_view local = address.substr(0, at);
    if (!printable_ascii(local) || local.find_first_of("<>()[],;:\"") != std::string_view::npos) return problem;
    if (!check_hostname(address.substr(at + 1)).empty()) return problem;
    return {};
}

std::string toml_quote(std::string_view text) {
    std::string quoted = "\"";
    for (char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            quoted += '\\';
            quoted += c;
        } else if (byte < 0x20 || byte == 0x7f) {
            char escape[8];
            std::snprintf(escape, sizeof escape, "\\u%04X", byte);
            quoted += escape;
        } else {
            quoted += c;
        }
    }
    return quoted + '"';
}

void validate_merged(const settings& merged, const provenance& where) {
    for (const listener_config& listener : merged.listeners)
        if (listener.enabled) check_listener_port(merged, listener, where);
    const bool has_certificate = !merged.tls.certificate.empty();
    const bool has_key = !merged.tls.private_key.empty();
    if (has_certificate && !has_key)
        where.fail("tls.certificate", "is set but tls.private_key is not: give both or neither");
    if (has_key && !has_certificate)
        where.fail("tls.private_key", "is set but tls.certificate is not: give both or neither");
    if (merged.auth.policy == smtp::auth_policy::mode::accept_listed && merged.auth.accepted_pairs.empty())
        where.fail("auth.policy", "\"accept-listed\" needs at least one [[auth.accept]] user/password pair");
    if (merged.identity.discover && merged.identity.discover_urls.empty())
        where.fail("identity.discover", "is true but identity.discover_urls is empty: list at least one URL");
    check_relay(merged.relay, where);
}

}  // namespace relaybait::config::detail
