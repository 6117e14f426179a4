// Checks of single values shared by the file reader and the command line, and the checks
// that span several keys, run once everything is merged.
#include <arpa/inet.h>

#include <cstdio>

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

void check_listener_port(const settings& merged, const listener_config& listener, const provenance& where) {
    const std::int64_t port = std::int64_t{listener.port} + merged.port_offset;
    if (port >= 1 && port <= 65535) return;
    where.fail("port_offset", "listeners." + listener.name + ".port " + std::to_string(listener.port) + " + port_offset " +
                                  std::to_string(merged.port_offset) + " = " + std::to_string(port) +
                                  " is outside 1 to 65535");
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
}

}  // namespace relaybait::config::detail
