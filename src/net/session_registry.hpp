#pragma once
// Every live session: counts per client (connection limits) and overall, and deadlines.
// "Per client" is per IPv4 address and per IPv6 /64: one IPv6 host is usually given a whole /64
// and can connect from any of its 2^64 addresses, so counting full IPv6 addresses would give it
// no limit at all.
// One sweeper timer checks all deadlines twice a second instead of one timer per session,
// which keeps an idle session down to a few hundred bytes.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

namespace relaybait::net {

class session_registry {
public:
    using clock = std::chrono::steady_clock;

    struct entry {
        std::string peer_ip;
        clock::time_point deadline = clock::time_point::max();
        std::function<void()> expire;  // called once when the deadline passes (or at shutdown)
        bool expired = false;
    };
    using handle = std::list<entry>::iterator;

    session_registry(std::size_t max_total, std::size_t max_per_ip);

    // Admission: false when a limit is reached (the caller answers busy and closes). max_per_ip
    // applies to peer_ip's limit_key(), shared by every address of an IPv6 /64.
    bool admit(const std::string& peer_ip) const;
    // entry::peer_ip stays the session's own address (what is reported); only the count is keyed.
    handle add(std::string peer_ip, std::function<void()> expire);
    void remove(handle h);
    void set_deadline(handle h, clock::time_point deadline) { h->deadline = deadline; }

    std::size_t total() const { return sessions_.size(); }
    std::uint64_t sessions_added() const { return added_; }  // since start
    std::size_t from(const std::string& peer_ip) const;  // sessions counted under peer_ip's limit_key()

    // What max_per_ip counts by: the client's network (common/client_network.hpp: an IPv4
    // address, an IPv6 /64). Text that is no IP address is its own key.
    static std::string limit_key(std::string_view peer_ip);

    // Calls expire on every session past its deadline; returns how many.
    std::size_t sweep(clock::time_point now);
    // Shutdown: expire everything.
    void expire_all();
    // After a burst: true (once) when the number of sessions has fallen to a quarter of a peak
    // of at least min_peak since the last time this returned true. serve() then hands the
    // burst's freed heap pages back to the system (malloc_trim).
    bool burst_ended(std::size_t min_peak = 1000);
    void stop() { stopped_ = true; }  // the sweeper ends at its next tick
    // Every period: sweep, then `also` (other periodic io-thread checks ride on this timer).
    boost::asio::awaitable<void> run_sweeper(std::chrono::milliseconds period, std::function<void()> also = {});

private:
    std::size_t max_total_;
    std::size_t max_per_ip_;
    bool stopped_ = false;
    std::uint64_t added_ = 0;
    std::size_t peak_ = 0;  // most sessions at once since the last burst_ended()
    std::list<entry> sessions_;
    std::unordered_map<std::string, std::size_t> per_ip_;  // by limit_key()
};

}  // namespace relaybait::net
