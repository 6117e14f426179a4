#pragma once
// The network one client controls, for the limits counted per client (the session registry's
// sessions per client, the relay's per-client cap): an IPv4 address as is, an IPv4-mapped IPv6
// address as its IPv4 address, any other IPv6 address as its /64 ("2001:db8:1:2::/64", zone
// dropped): one IPv6 subscriber is usually given a whole /64 and can pick a fresh address for
// every connection. Header-only, like the rest of src/common.
#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>

namespace relaybait::clients {

// nullopt when `ip` is not an IP address (the caller decides what such text counts as).
inline std::optional<std::string> network_key(std::string_view ip) {
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(ip, ec);
    if (ec) return std::nullopt;
    if (address.is_v4()) return address.to_string();
    const auto v6 = address.to_v6();
    if (v6.is_v4_mapped()) return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_string();
    auto bytes = v6.to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

}  // namespace relaybait::clients
