#pragma once
// The byte stream under one SMTP session: a TCP socket, upgraded in place to TLS by
// STARTTLS or from the start on smtps. Plain sessions hold no read buffer of their own while
// idle (they wait for readability, then read into a buffer shared by the thread), which is
// what keeps 10,000 idle connections small.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <tuple>

#include "smtp/engine.hpp"

namespace relaybait::net {

namespace detail {
// Allocates an operation at its exact size. Asio's default handler allocation recycles the
// thread's last freed blocks (up to 1 KB), so the readiness wait every idle session parks on
// would pin whatever block was freed just before it. (std::allocator<void> would fall back to
// that recycling.)
template <typename T>
struct exact_allocator {
    using value_type = T;
    exact_allocator() noexcept = default;
    template <typename U>
    exact_allocator(const exact_allocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p); }
    template <typename U>
    bool operator==(const exact_allocator<U>&) const noexcept { return true; }
};
}  // namespace detail

class transport {
public:
    explicit transport(boost::asio::ip::tcp::socket socket);

    // Reads at least one byte; returns an empty span at EOF or on error (ec set).
    boost::asio::awaitable<std::span<const char>> read_some(boost::system::error_code& ec);

    // Plain sessions only (not tls_active()), the idle path without a coroutine frame of its
    // own: try_read() reads what is already there into the thread's shared buffer (ec =
    // would_block when nothing is), and `co_await wait_readable()` (yields std::tuple<error_code>)
    // parks the caller's coroutine on the socket with nothing but the reactor operation.
    std::span<const char> try_read(boost::system::error_code& ec);
    auto wait_readable() {
        using result = std::tuple<boost::system::error_code>;
        return boost::asio::async_initiate<const boost::asio::deferred_t&, void(result)>(
            [this](auto handler) {
                socket_.async_wait(boost::asio::ip::tcp::socket::wait_read,
                                   boost::asio::bind_allocator(detail::exact_allocator<void>(),
                                                               [handler = std::move(handler)](boost::system::error_code ec) mutable {
                                                                   std::move(handler)(result(ec));
                                                               }));
            },
            boost::asio::deferred);
    }
    boost::asio::awaitable<void> write(std::string_view bytes, boost::system::error_code& ec);
    // TLS server handshake on the current socket; on success tls_info() is set.
    boost::asio::awaitable<void> start_tls(boost::asio::ssl::context& context, boost::system::error_code& ec);

    bool tls_active() const { return tls_ != nullptr; }
    std::optional<smtp::tls_facts> tls_info() const;

    void cancel();  // aborts pending operations (timeouts, shutdown)
    void close(bool reset);  // reset: RST instead of FIN, like Postfix after a failed handshake
    boost::asio::ip::tcp::socket& socket();

private:
    boost::asio::ip::tcp::socket socket_;
    std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls_;
    std::unique_ptr<char[]> tls_buffer_;  // TLS sessions only: SSL decrypts into it
};

}  // namespace relaybait::net
