#include "relay/resolver.hpp"

#include <gtest/gtest.h>

#include "test_support.hpp"

using namespace relaybait::relay;
namespace asio = boost::asio;

namespace {

struct dns_server : relay_test::loopback_dns {
    dns_server()
        : relay_test::loopback_dns({"--mx-host=example.test,mx2.example.test,20", "--mx-host=example.test,mx.example.test,10",
                                    "--host-record=mx.example.test,127.0.0.1", "--host-record=mx2.example.test,127.0.0.2,::1",
                                    "--host-record=plain.test,127.0.0.3", "--mx-host=nullmx.test,.,0"}) {}
    resolver_options options() const { return {{server()}, std::chrono::milliseconds(1000), 2}; }
};

dns_server& server() {
    static dns_server s;
    return s;
}

mx_result mx(const std::string& domain) {
    return relay_test::run<mx_result>([&](asio::any_io_executor ex) -> asio::awaitable<mx_result> {
        resolver r(ex, server().options());
        co_return co_await r.mx(domain);
    });
}

address_result addresses(const std::string& host, bool v6 = true) {
    return relay_test::run<address_result>([&](asio::any_io_executor ex) -> asio::awaitable<address_result> {
        resolver r(ex, server().options());
        co_return co_await r.addresses(host, v6);
    });
}

}  // namespace

TEST(RelayResolver, MxSortedByPreference) {
    const auto r = mx("example.test");
    ASSERT_EQ(r.status, dns_status::ok) << r.error;
    ASSERT_EQ(r.hosts.size(), 2u);
    EXPECT_EQ(r.hosts[0].host, "mx.example.test");
    EXPECT_EQ(r.hosts[0].preference, 10u);
    EXPECT_EQ(r.hosts[1].host, "mx2.example.test");
    EXPECT_FALSE(r.hosts[0].implicit);
}

TEST(RelayResolver, NoMxFallsBackToTheDomain) {
    const auto r = mx("plain.test");
    ASSERT_EQ(r.status, dns_status::ok) << r.error;
    ASSERT_EQ(r.hosts.size(), 1u);
    EXPECT_EQ(r.hosts[0].host, "plain.test");
    EXPECT_TRUE(r.hosts[0].implicit);
    const auto a = addresses("plain.test");
    ASSERT_EQ(a.addresses.size(), 1u);
    EXPECT_EQ(a.addresses[0].to_string(), "127.0.0.3");
}

TEST(RelayResolver, NxdomainAndNullMx) {
    EXPECT_EQ(mx("nosuch.test").status, dns_status::no_domain);
    EXPECT_EQ(mx("nullmx.test").status, dns_status::null_mx);
    EXPECT_EQ(addresses("nosuch.test").status, dns_status::no_domain);
}

TEST(RelayResolver, AddressesIpv6FirstAndIpv4Only) {
    const auto a = addresses("mx2.example.test");
    ASSERT_EQ(a.addresses.size(), 2u);
    EXPECT_TRUE(a.addresses[0].is_v6());
    EXPECT_EQ(a.addresses[1].to_string(), "127.0.0.2");
    const auto v4 = addresses("mx2.example.test", false);
    ASSERT_EQ(v4.addresses.size(), 1u);
    EXPECT_TRUE(v4.addresses[0].is_v4());
    EXPECT_EQ(addresses("192.0.2.1").addresses.at(0).to_string(), "192.0.2.1");
}

TEST(RelayResolver, UnreachableServerIsTemporary) {
    const auto r = relay_test::run<mx_result>([&](asio::any_io_executor ex) -> asio::awaitable<mx_result> {
        resolver res(ex, {{"127.0.0.1:" + std::to_string(relay_test::free_port())}, std::chrono::milliseconds(200), 1});
        co_return co_await res.mx("example.test");
    });
    EXPECT_EQ(r.status, dns_status::temporary);
}
