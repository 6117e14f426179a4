#include "net/session_registry.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <vector>

namespace relaybait::net {
namespace {

using clock = session_registry::clock;

TEST(session_registry, admits_up_to_the_per_ip_limit) {
    session_registry registry(100, 2);
    auto a = registry.add("198.51.100.1", [] {});
    EXPECT_TRUE(registry.admit("198.51.100.1"));
    auto b = registry.add("198.51.100.1", [] {});
    EXPECT_FALSE(registry.admit("198.51.100.1"));
    EXPECT_TRUE(registry.admit("198.51.100.2"));  // others are unaffected
    registry.remove(a);
    EXPECT_TRUE(registry.admit("198.51.100.1"));
    registry.remove(b);
    EXPECT_EQ(registry.from("198.51.100.1"), 0u);
}

// One IPv6 host usually holds a whole /64: every address of it counts against one limit.
TEST(session_registry, an_ipv6_slash_64_shares_one_per_ip_limit) {
    session_registry registry(100, 2);
    auto a = registry.add("2001:db8:1:2::1", [] {});
    auto b = registry.add("2001:db8:1:2:ffff:ffff:ffff:fffe", [] {});
    EXPECT_FALSE(registry.admit("2001:db8:1:2:aaaa::7"));  // same /64, another address
    EXPECT_FALSE(registry.admit("2001:DB8:1:2:0:0:0:1"));  // spelled differently
    EXPECT_EQ(registry.from("2001:db8:1:2:1234::"), 2u);
    EXPECT_TRUE(registry.admit("2001:db8:1:3::1"));        // the next /64 is another client
    // What the registry keeps for a session is still its own address.
    EXPECT_EQ(a->peer_ip, "2001:db8:1:2::1");
    EXPECT_EQ(b->peer_ip, "2001:db8:1:2:ffff:ffff:ffff:fffe");
    registry.remove(a);
    EXPECT_TRUE(registry.admit("2001:db8:1:2:aaaa::7"));
    registry.remove(b);
    EXPECT_EQ(registry.from("2001:db8:1:2::1"), 0u);
}

TEST(session_registry, ipv4_and_ipv4_mapped_addresses_count_per_ipv4_address) {
    session_registry registry(100, 2);
    auto a = registry.add("198.51.100.1", [] {});
    auto b = registry.add("::ffff:198.51.100.1", [] {});  // the same client through a v6 socket
    EXPECT_FALSE(registry.admit("198.51.100.1"));
    EXPECT_FALSE(registry.admit("::ffff:198.51.100.1"));
    EXPECT_TRUE(registry.admit("198.51.100.2"));  // an IPv4 /24 neighbour is another client
    EXPECT_TRUE(registry.admit("::ffff:198.51.100.2"));
    EXPECT_EQ(b->peer_ip, "::ffff:198.51.100.1");
    registry.remove(b);
    registry.remove(a);
    EXPECT_EQ(registry.from("198.51.100.1"), 0u);
}

TEST(session_registry, limit_keys) {
    EXPECT_EQ(session_registry::limit_key("203.0.113.9"), "203.0.113.9");
    EXPECT_EQ(session_registry::limit_key("::ffff:203.0.113.9"), "203.0.113.9");
    EXPECT_EQ(session_registry::limit_key("2001:db8:aa:bb:cc:dd:ee:ff"), "2001:db8:aa:bb::/64");
    EXPECT_EQ(session_registry::limit_key("2001:db8:aa:bb::"), "2001:db8:aa:bb::/64");
    EXPECT_EQ(session_registry::limit_key("fe80::1%1"), "fe80::/64");
    EXPECT_EQ(session_registry::limit_key("::1"), "::/64");
    EXPECT_EQ(session_registry::limit_key("not an address"), "not an address");
}

TEST(session_registry, admits_up_to_the_total_limit) {
    session_registry registry(2, 10);
    registry.add("198.51.100.1", [] {});
    registry.add("198.51.100.2", [] {});
    EXPECT_FALSE(registry.admit("198.51.100.3"));
    EXPECT_EQ(registry.total(), 2u);
}

TEST(session_registry, sweep_expires_only_sessions_past_their_deadline_once) {
    session_registry registry(10, 10);
    int expired_a = 0, expired_b = 0;
    auto a = registry.add("198.51.100.1", [&] { ++expired_a; });
    auto b = registry.add("198.51.100.2", [&] { ++expired_b; });
    const auto now = clock::now();
    registry.set_deadline(a, now - std::chrono::seconds(1));
    registry.set_deadline(b, now + std::chrono::hours(1));
    EXPECT_EQ(registry.sweep(now), 1u);
    EXPECT_EQ(registry.sweep(now), 0u);
    EXPECT_EQ(expired_a, 1);
    EXPECT_EQ(expired_b, 0);
    registry.expire_all();
    EXPECT_EQ(expired_b, 1);
}

TEST(session_registry, burst_ended_once_the_sessions_fall_to_a_quarter_of_a_large_peak) {
    session_registry registry(100, 100);
    std::vector<session_registry::handle> live;
    for (int i = 0; i < 8; ++i) live.push_back(registry.add("198.51.100.1", [] {}));
    EXPECT_FALSE(registry.burst_ended(10));  // a peak of 8 is not a burst
    for (int i = 0; i < 4; ++i) live.push_back(registry.add("198.51.100.1", [] {}));
    EXPECT_FALSE(registry.burst_ended(10));  // 12 still open
    while (live.size() > 3) {
        registry.remove(live.back());
        live.pop_back();
    }
    EXPECT_TRUE(registry.burst_ended(10));   // 3 <= 12 / 4
    EXPECT_FALSE(registry.burst_ended(10));  // once per burst
    for (auto h : live) registry.remove(h);
}

}  // namespace
}  // namespace relaybait::net

namespace relaybait::net {
namespace {

TEST(session_registry, counts_every_session_added_since_start) {
    session_registry registry(10, 10);
    EXPECT_EQ(registry.sessions_added(), 0u);
    registry.remove(registry.add("198.51.100.1", [] {}));
    registry.add("198.51.100.2", [] {});
    EXPECT_EQ(registry.sessions_added(), 2u);  // closed sessions count too
    EXPECT_EQ(registry.total(), 1u);
}

TEST(session_registry, the_sweeper_expires_sessions_and_runs_the_other_periodic_checks) {
    boost::asio::io_context io;
    session_registry registry(10, 10);
    bool expired = false;
    auto session = registry.add("198.51.100.3", [&] { expired = true; });
    registry.set_deadline(session, session_registry::clock::now());
    int checks = 0;
    boost::asio::co_spawn(io, registry.run_sweeper(std::chrono::milliseconds(1), [&] {
        if (++checks == 3) registry.stop();
    }), boost::asio::detached);
    io.run_for(std::chrono::seconds(5));  // returns once the sweeper has stopped
    EXPECT_TRUE(expired);
    EXPECT_EQ(checks, 3);
}

}  // namespace
}  // namespace relaybait::net

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace relaybait::net {
namespace {

// What net/session.cpp's session does with the registry's calls: the first expiry (the deadline
// passed) only marks it timed out, so that it can still say 421; a second one, or any at
// shutdown, ends it. Either cancels what it waits on.
struct blocked_session {
    explicit blocked_session(boost::asio::io_context& io, const bool& stopping) : wait(io), stopping(stopping) {}
    boost::asio::steady_timer wait;  // a write the client never reads, or the store's commit
    const bool& stopping;
    bool timed_out = false;
    bool expired = false;
    bool ended = false;
    int expire_calls = 0;

    void expire() {
        ++expire_calls;
        if (!timed_out && !stopping) timed_out = true;
        else expired = true;
        wait.cancel();
    }

    // Blocked until expired: after timing out it stays blocked (its 421 is not read, or its
    // commit has not returned) without arming a new deadline.
    boost::asio::awaitable<void> run(session_registry& registry, session_registry::handle h) {
        while (!expired) {
            wait.expires_at(boost::asio::steady_timer::time_point::max());
            co_await wait.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        }
        registry.remove(h);
        ended = true;
    }
};

// Shutdown reaches every session, also one whose deadline passed once already and which is
// still blocked (the registry marked its entry expired, and no sweep will call it again).
TEST(session_registry, expire_all_ends_a_session_that_already_timed_out_once) {
    boost::asio::io_context io;
    bool stopping = false;
    session_registry registry(10, 10);
    blocked_session late(io, stopping), live(io, stopping);
    const auto late_handle = registry.add("198.51.100.5", [&] { late.expire(); });
    const auto live_handle = registry.add("198.51.100.6", [&] { live.expire(); });
    boost::asio::co_spawn(io, late.run(registry, late_handle), boost::asio::detached);
    boost::asio::co_spawn(io, live.run(registry, live_handle), boost::asio::detached);
    const auto now = clock::now();
    registry.set_deadline(late_handle, now - std::chrono::seconds(1));
    registry.set_deadline(live_handle, now + std::chrono::hours(1));
    io.poll();

    EXPECT_EQ(registry.sweep(now), 1u);
    io.poll();
    EXPECT_TRUE(late.timed_out);
    EXPECT_FALSE(late.ended);  // still writing its 421
    EXPECT_TRUE(late_handle->expired);
    EXPECT_EQ(registry.sweep(now + std::chrono::seconds(10)), 0u);  // the sweeper is done with it
    EXPECT_EQ(late.expire_calls, 1);

    stopping = true;  // what serve() does on SIGTERM
    registry.stop();
    registry.expire_all();
    io.poll();
    EXPECT_EQ(late.expire_calls, 2);
    EXPECT_TRUE(late.ended) << "shutdown did not reach a session that had timed out once";
    EXPECT_TRUE(live.ended);
    EXPECT_FALSE(live.timed_out);  // at shutdown: no 421, just closed
    EXPECT_EQ(registry.total(), 0u);
}

}  // namespace
}  // namespace relaybait::net
