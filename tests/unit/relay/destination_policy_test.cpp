#include "relay/destination_policy.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace relaybait::relay;

namespace {

struct destination_case {
    const char* address;
    const char* reason_contains;  // nullptr: public (the relay may connect)
};

// One line per range: its first and last address where the edge matters, and the public
// neighbours just outside it.
constexpr destination_case cases[] = {
    // public
    {"8.8.8.8", nullptr},
    {"1.1.1.1", nullptr},
    {"172.15.255.255", nullptr},
    {"172.32.0.0", nullptr},
    {"100.63.255.255", nullptr},
    {"100.128.0.0", nullptr},
    {"198.17.255.255", nullptr},
    {"198.20.0.0", nullptr},
    {"223.255.255.255", nullptr},
    {"2a00:1450:4001:80b::201a", nullptr},
    {"2001:4860:4860::8888", nullptr},
    {"2001:db9::1", nullptr},
    {"::ffff:8.8.8.8", nullptr},
    {"64:ff9b::808:808", nullptr},
    {"2002:808:808::1", nullptr},
    // IPv4
    {"0.0.0.0", "0.0.0.0/8"},
    {"0.255.255.255", "0.0.0.0/8"},
    {"10.0.0.5", "RFC 1918"},
    {"10.255.255.255", "RFC 1918"},
    {"100.64.0.1", "CGNAT"},
    {"100.127.255.255", "CGNAT"},
    {"127.0.0.1", "loopback"},
    {"127.255.255.254", "loopback"},
    {"169.254.169.254", "link-local"},
    {"172.16.0.1", "RFC 1918"},
    {"172.31.255.255", "RFC 1918"},
    {"192.0.0.8", "192.0.0.0/24"},
    {"192.0.2.1", "documentation"},
    {"192.88.99.1", "6to4 relay"},
    {"192.168.1.1", "RFC 1918"},
    {"198.18.0.1", "benchmarking"},
    {"198.19.255.255", "benchmarking"},
    {"198.51.100.7", "documentation"},
    {"203.0.113.9", "documentation"},
    {"224.0.0.1", "multicast"},
    {"239.255.255.255", "multicast"},
    {"240.0.0.1", "reserved"},
    {"255.255.255.255", "broadcast"},
    // IPv6
    {"::", "unspecified"},
    {"::1", "loopback"},
    {"fe80::1", "link-local"},
    {"febf:ffff::1", "link-local"},
    {"fec0::1", "site-local"},
    {"fc00::1", "unique local"},
    {"fd12:3456::1", "unique local"},
    {"ff02::1", "multicast"},
    {"100::1", "discard-only"},
    {"4000::1", "outside 2000::/3"},
    {"2001:db8::25", "documentation"},
    {"3fff:0fff::1", "documentation"},
    {"2001::1", "Teredo"},
    {"2001:2::1", "benchmarking"},
    {"2001:10::1", "ORCHID"},
    {"2001:20::1", "ORCHIDv2"},
    {"64:ff9b:1::1", "local-use NAT64"},
    // IPv6 forms carrying a non-public IPv4 address
    {"::ffff:127.0.0.1", "loopback (IPv4-mapped 127.0.0.1)"},
    {"::ffff:10.0.0.5", "RFC 1918 private (IPv4-mapped"},
    {"::ffff:169.254.169.254", "link-local (IPv4-mapped"},
    {"::127.0.0.1", "loopback (IPv4-compatible"},
    {"::10.0.0.5", "IPv4-compatible"},
    {"64:ff9b::7f00:1", "loopback (NAT64 127.0.0.1)"},
    {"64:ff9b::a9fe:a9fe", "link-local (NAT64"},
    {"2002:7f00:1::1", "loopback (6to4"},
    {"2002:c0a8:101::1", "RFC 1918 private (6to4"},
};

TEST(RelayDestinationPolicy, OnlyGloballyRoutableAddressesArePublic) {
    for (const auto& c : cases) {
        const auto address = boost::asio::ip::make_address(c.address);
        const std::string why = non_public_reason(address);
        if (c.reason_contains == nullptr) {
            EXPECT_EQ(why, "") << c.address;
            EXPECT_TRUE(is_public_destination(address)) << c.address;
        } else {
            EXPECT_NE(why.find(c.reason_contains), std::string::npos) << c.address << " -> \"" << why << "\"";
            EXPECT_FALSE(is_public_destination(address)) << c.address;
        }
    }
}

TEST(RelayDestinationPolicy, AScopedAddressIsNeverPublic) {
    auto address = boost::asio::ip::make_address_v6("2a00:1450:4001:80b::201a");
    address.scope_id(2);
    EXPECT_FALSE(is_public_destination(address));
}

}  // namespace
