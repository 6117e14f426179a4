#include "rules/encodings.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>

namespace relaybait::rules {
namespace {

std::string hex(std::string_view data, bool upper) {
    static constexpr char lower_digits[] = "0123456789abcdef";
    static constexpr char upper_digits[] = "0123456789ABCDEF";
    const char* digits = upper ? upper_digits : lower_digits;
    std::string out;
    for (unsigned char c : data) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::string url_encode(std::string_view data, bool every_byte) {
    std::string out;
    for (unsigned char c : data) {
        const bool unreserved = std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
        if (unreserved && !every_byte) {
            out += static_cast<char>(c);
        } else {
            static constexpr char digits[] = "0123456789ABCDEF";
            out += '%';
            out += digits[c >> 4];
            out += digits[c & 15];
        }
    }
    return out;
}

}  // namespace

std::string base64_at_offset(std::string_view value, int offset) {
    if (offset < 0 || offset > 2 || value.empty()) return {};
    // Bits of `value` start at 8*offset; base64 character j covers bits [6j, 6j+6).
    std::string padded(static_cast<std::size_t>(offset), '\0');
    padded.append(value);
    padded.append(3, '\0');  // no '=' padding inside the range we keep
    const std::string encoded = base64_encode(padded);
    const std::size_t first = (8 * static_cast<std::size_t>(offset) + 5) / 6;
    const std::size_t end = 8 * (static_cast<std::size_t>(offset) + value.size()) / 6;
    if (end <= first || end - first < 4) return {};
    return encoded.substr(first, end - first);
}

std::vector<encoded_form> encodings(std::string_view value) {
    std::vector<encoded_form> forms;
    auto add = [&](std::string text, bool exact, std::string kind) {
        if (text.empty()) return;
        for (const auto& f : forms)
            if (f.text == text) return;
        forms.push_back({std::move(text), exact, std::move(kind)});
    };
    add(std::string(value), false, "plain");
    for (int offset = 0; offset < 3; ++offset)
        add(base64_at_offset(value, offset), true, "base64@" + std::to_string(offset));
    add(hex(value, false), false, "hex");
    add(hex(value, true), false, "hex-upper");
    add(std::string(value.rbegin(), value.rend()), false, "reversed");
    add(url_encode(value, false), false, "url");
    add(url_encode(value, true), false, "url-all");

    const std::string text(value);
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
        const auto* b = reinterpret_cast<const unsigned char*>(&v4.s_addr);
        char buffer[64];
        std::snprintf(buffer, sizeof buffer, "%03u.%03u.%03u.%03u", b[0], b[1], b[2], b[3]);
        add(buffer, false, "ipv4-zero-padded");
        std::snprintf(buffer, sizeof buffer, "%u.%u.%u.%u", b[3], b[2], b[1], b[0]);
        add(buffer, false, "ipv4-reversed-octets");
        add("[" + text + "]", false, "address-literal");
        const std::uint32_t n = (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) | b[3];
        add(std::to_string(n), false, "ipv4-decimal");
    } else if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
        char buffer[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &v6, buffer, sizeof buffer) != nullptr) add(buffer, false, "ipv6-compressed");
        std::string expanded;
        for (int i = 0; i < 16; i += 2) {
            char group[8];
            std::snprintf(group, sizeof group, "%02x%02x", v6.s6_addr[i], v6.s6_addr[i + 1]);
            if (i != 0) expanded += ':';
            expanded += group;
        }
        add(expanded, false, "ipv6-expanded");
        add("[" + text + "]", false, "address-literal");
        add("[IPv6:" + text + "]", false, "address-literal-v6");
    }
    return forms;
}

}  // namespace relaybait::rules
