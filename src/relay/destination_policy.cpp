#include "relay/destination_policy.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>

namespace relaybait::relay {

namespace {

using boost::asio::ip::address_v4;
using boost::asio::ip::address_v6;

struct v4_range {
    std::uint32_t network;
    unsigned prefix;
    const char* why;
};

constexpr std::uint32_t v4(unsigned a, unsigned b, unsigned c, unsigned d) { return (a << 24) | (b << 16) | (c << 8) | d; }

// IANA IPv4 Special-Purpose Address Registry entries that are not globally reachable, and
// multicast / reserved space. 192.0.0.9/32 and 192.0.0.10/32 (global anycast) are inside
// 192.0.0.0/24 and refused with it: no MX lives there.
constexpr v4_range v4_ranges[] = {
    {v4(0, 0, 0, 0), 8, "\"this network\" 0.0.0.0/8"},
    {v4(10, 0, 0, 0), 8, "RFC 1918 private"},
    {v4(100, 64, 0, 0), 10, "CGNAT shared 100.64.0.0/10"},
    {v4(127, 0, 0, 0), 8, "loopback"},
    {v4(169, 254, 0, 0), 16, "link-local"},
    {v4(172, 16, 0, 0), 12, "RFC 1918 private"},
    {v4(192, 0, 0, 0), 24, "IETF protocol assignments 192.0.0.0/24"},
    {v4(192, 0, 2, 0), 24, "documentation"},
    {v4(192, 88, 99, 0), 24, "6to4 relay anycast"},
    {v4(192, 168, 0, 0), 16, "RFC 1918 private"},
    {v4(198, 18, 0, 0), 15, "benchmarking"},
    {v4(198, 51, 100, 0), 24, "documentation"},
    {v4(203, 0, 113, 0), 24, "documentation"},
    {v4(224, 0, 0, 0), 4, "multicast"},
    {v4(255, 255, 255, 255), 32, "broadcast"},  // before 240/4: the more telling name
    {v4(240, 0, 0, 0), 4, "reserved 240.0.0.0/4"},
};

std::string v4_reason(std::uint32_t ip) {
    for (const auto& r : v4_ranges) {
        const std::uint32_t mask = r.prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - r.prefix);
        if ((ip & mask) == r.network) return r.why;
    }
    return "";
}

using v6_bytes = address_v6::bytes_type;

struct v6_range {
    std::array<std::uint16_t, 8> network;  // the eight 16-bit groups
    unsigned prefix;
    const char* why;
};

// Inside 2000::/3 (global unicast) these are still not reachable, or not mail servers.
constexpr v6_range v6_global_exceptions[] = {
    {{0x2001, 0x0002}, 48, "benchmarking 2001:2::/48"},
    {{0x2001, 0x0010}, 28, "ORCHID 2001:10::/28"},
    {{0x2001, 0x0020}, 28, "ORCHIDv2 2001:20::/28"},
    {{0x2001, 0x0db8}, 32, "documentation 2001:db8::/32"},
    {{0x2001, 0x0000}, 32, "Teredo 2001::/32"},
    {{0x3fff, 0x0000}, 20, "documentation 3fff::/20"},
};

// Outside 2000::/3 every address is refused; these only name the common ranges.
constexpr v6_range v6_named[] = {
    {{}, 128, "unspecified"},
    {{0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"},
    {{0x0064, 0xff9b, 0x0001}, 48, "local-use NAT64 64:ff9b:1::/48"},
    {{0x0100}, 64, "discard-only 100::/64"},
    {{0xfe80}, 10, "link-local"},
    {{0xfec0}, 10, "site-local"},
    {{0xfc00}, 7, "unique local fc00::/7"},
    {{0xff00}, 8, "multicast"},
};

bool in_range(const v6_bytes& b, const v6_range& r) {
    for (unsigned bit = 0; bit < r.prefix; bit += 16) {
        const std::uint16_t group = static_cast<std::uint16_t>((b[bit / 8] << 8) | b[bit / 8 + 1]);
        const unsigned bits = std::min(16u, r.prefix - bit);
        const std::uint16_t mask = static_cast<std::uint16_t>(0xffffu << (16 - bits));
        if ((group & mask) != (r.network[bit / 16] & mask)) return false;
    }
    return true;
}

std::uint32_t v4_at(const v6_bytes& b, std::size_t offset) {
    return (std::uint32_t{b[offset]} << 24) | (std::uint32_t{b[offset + 1]} << 16) | (std::uint32_t{b[offset + 2]} << 8) |
           std::uint32_t{b[offset + 3]};
}

// The IPv4 address an IPv6 form carries, judged like the IPv4 address itself.
std::string embedded_reason(std::uint32_t ip, std::string_view carrier) {
    std::string why = v4_reason(ip);
    if (!why.empty()) why += std::string(" (") + std::string(carrier) + " " + address_v4(ip).to_string() + ")";
    return why;
}

std::string v6_reason(const address_v6& address) {
    const v6_bytes b = address.to_bytes();
    const bool first_80_zero = std::all_of(b.begin(), b.begin() + 10, [](unsigned char x) { return x == 0; });
    if (first_80_zero && b[10] == 0xff && b[11] == 0xff) return embedded_reason(v4_at(b, 12), "IPv4-mapped");
    if (first_80_zero && b[10] == 0 && b[11] == 0) {
        // ::/96: the unspecified address, loopback, or the deprecated IPv4-compatible form.
        if (address.is_unspecified()) return "unspecified";
        if (address.is_loopback()) return "loopback";
        return embedded_reason(v4_at(b, 12), "IPv4-compatible");
    }
    if (in_range(b, {{0x0064, 0xff9b}, 96, ""})) return embedded_reason(v4_at(b, 12), "NAT64");
    if (in_range(b, {{0x2002}, 16, ""})) return embedded_reason(v4_at(b, 2), "6to4");
    if (in_range(b, {{0x2000}, 3, ""})) {
        for (const auto& r : v6_global_exceptions) {
            if (in_range(b, r)) return r.why;
        }
        return "";
    }
    for (const auto& r : v6_named) {
        if (in_range(b, r)) return r.why;
    }
    return "not global unicast (outside 2000::/3)";
}

}  // namespace

std::string non_public_reason(const boost::asio::ip::address& address) {
    if (address.is_v4()) return v4_reason(address.to_v4().to_uint());
    // A scope id only means something on a link: no global address has one.
    if (address.to_v6().scope_id() != 0) return "scoped (link-local)";
    return v6_reason(address.to_v6());
}

}  // namespace relaybait::relay
