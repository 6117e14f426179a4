#include "net/session_registry.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

#include "common/client_network.hpp"

namespace relaybait::net {

session_registry::session_registry(std::size_t max_total, std::size_t max_per_ip)
    : max_total_(max_total), max_per_ip_(max_per_ip) {}

std::string session_registry::limit_key(std::string_view peer_ip) {
    return clients::network_key(peer_ip).value_or(std::string(peer_ip));
}

bool session_registry::admit(const std::string& peer_ip) const {
    return sessions_.size() < max_total_ && from(peer_ip) < max_per_ip_;
}

std::size_t session_registry::from(const std::string& peer_ip) const {
    const auto it = per_ip_.find(limit_key(peer_ip));
    return it == per_ip_.end() ? 0 : it->second;
}

session_registry::handle session_registry::add(std::string peer_ip, std::function<void()> expire) {
    ++per_ip_[limit_key(peer_ip)];
    sessions_.push_front(entry{std::move(peer_ip), clock::time_point::max(), std::move(expire), false});
    peak_ = std::max(peak_, sessions_.size());
    ++added_;
    return sessions_.begin();
}

void session_registry::remove(handle h) {
    const auto it = per_ip_.find(limit_key(h->peer_ip));  // recomputed: an idle session stores no key
    if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
    sessions_.erase(h);
}

std::size_t session_registry::sweep(clock::time_point now) {
    std::size_t expired = 0;
    for (auto& session : sessions_) {
        if (!session.expired && session.deadline <= now) {
            session.expired = true;
            ++expired;
            session.expire();
        }
    }
    return expired;
}

// Every session, also one whose deadline passed once already (it may still be waiting for a
// commit, its farewell not armed yet): at shutdown there is no next sweep to wait for.
void session_registry::expire_all() {
    for (auto& session : sessions_) {
        session.expired = true;
        session.expire();
    }
}

bool session_registry::burst_ended(std::size_t min_peak) {
    if (peak_ < min_peak || sessions_.size() > peak_ / 4) return false;
    peak_ = sessions_.size();
    return true;
}

boost::asio::awaitable<void> session_registry::run_sweeper(std::chrono::milliseconds period, std::function<void()> also) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    for (;;) {
        timer.expires_after(period);
        auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        if (ec || stopped_) co_return;
        sweep(clock::now());
        if (also) also();
    }
}

}  // namespace relaybait::net
