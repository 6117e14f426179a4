#pragma once
// Where the relay may connect (outside test mode): only globally routable unicast addresses.
// An MX record is attacker-controlled data: a probe to x@evil.example whose MX resolves to
// 127.0.0.1, 10.0.0.5 or 169.254.169.254 must not make the honeypot talk SMTP to its own
// host, its LAN or a cloud metadata service (SSRF). The addresses the relay connects to are
// exactly the ones checked here (no second lookup), so DNS rebinding cannot slip past it.
//
// Refused (the reason names the range):
//   IPv4  0.0.0.0/8, 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16, 172.16/12, 192.0.0.0/24,
//         192.0.2.0/24, 192.88.99.0/24 (6to4 relay), 192.168/16, 198.18/15, 198.51.100/24,
//         203.0.113/24, 224/4 (multicast), 240/4 (reserved, includes 255.255.255.255)
//   IPv6  everything outside 2000::/3 (::, ::1, fe80::/10, fc00::/7, fec0::/10, ff00::/8,
//         100::/64, ...), and inside it 2001::/32 (Teredo), 2001:2::/48 (benchmarking),
//         2001:10::/28 and 2001:20::/28 (ORCHID), 2001:db8::/32 and 3fff::/20 (documentation),
//         64:ff9b:1::/48 (local NAT64)
//   IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped
//   ::ffff:0:0/96, IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16.
#include <boost/asio/ip/address.hpp>

#include <string>

namespace relaybait::relay {

// "" when the relay may connect to `address`; otherwise why not ("loopback", "RFC 1918
// private", "link-local", ...; an embedded IPv4 address adds what carried it).
std::string non_public_reason(const boost::asio::ip::address& address);

inline bool is_public_destination(const boost::asio::ip::address& address) {
    return non_public_reason(address).empty();
}

}  // namespace relaybait::relay
