#include "net/transport.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <memory>
#include <span>

namespace relaybait::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
constexpr std::size_t shared_buffer_size = 64 * 1024;
constexpr std::size_t tls_buffer_size = 16 * 1024;  // one TLS record

// Plain sessions read here right after the socket reported readable; the bytes are handed to
// the engine before the coroutine suspends again, so sessions never overlap in it.
// Allocated by the first read: a 64 KB thread_local array would sit in the static TLS block that
// glibc zeroes for every thread it creates, so each thread (the store, event and relay threads
// never read a socket) would hold 64 KB of touched memory.
std::span<char, shared_buffer_size> shared_read_buffer() {
    thread_local std::unique_ptr<char[]> buffer;
    if (!buffer) buffer.reset(new char[shared_buffer_size]);
    return std::span<char, shared_buffer_size>(buffer.get(), shared_buffer_size);
}
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);
}  // namespace

transport::transport(tcp::socket socket) : socket_(std::move(socket)) {
    boost::system::error_code ignored;
    socket_.non_blocking(true, ignored);
    socket_.set_option(tcp::no_delay(true), ignored);
}

tcp::socket& transport::socket() { return socket_; }

asio::awaitable<std::span<const char>> transport::read_some(boost::system::error_code& ec) {
    if (tls_) {
        auto [error, n] = co_await tls_->async_read_some(asio::buffer(tls_buffer_.get(), tls_buffer_size), tuple_awaitable);
        ec = error;
        co_return std::span<const char>(tls_buffer_.get(), error ? 0 : n);
    }
    for (;;) {
        const auto input = try_read(ec);
        if (ec != asio::error::would_block && ec != asio::error::try_again) co_return input;
        auto [wait_error] = co_await wait_readable();
        if (wait_error) {
            ec = wait_error;
            co_return std::span<const char>();
        }
    }
}

std::span<const char> transport::try_read(boost::system::error_code& ec) {
    const auto buffer = shared_read_buffer();
    const std::size_t n = socket_.read_some(asio::buffer(buffer.data(), buffer.size()), ec);
    return std::span<const char>(buffer.data(), ec ? 0 : n);
}

asio::awaitable<void> transport::write(std::string_view bytes, boost::system::error_code& ec) {
    if (tls_) {
        auto [error, n] = co_await asio::async_write(*tls_, asio::buffer(bytes), tuple_awaitable);
        ec = error;
    } else {
        auto [error, n] = co_await asio::async_write(socket_, asio::buffer(bytes), tuple_awaitable);
        ec = error;
    }
}

asio::awaitable<void> transport::start_tls(asio::ssl::context& context, boost::system::error_code& ec) {
    tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, context);
    tls_buffer_ = std::make_unique<char[]>(tls_buffer_size);
    auto [error] = co_await tls_->async_handshake(asio::ssl::stream_base::server, tuple_awaitable);
    ec = error;
}

std::optional<smtp::tls_facts> transport::tls_info() const {
    if (!tls_) return std::nullopt;
    SSL* ssl = const_cast<asio::ssl::stream<tcp::socket&>&>(*tls_).native_handle();
    smtp::tls_facts facts;
    facts.version = SSL_get_version(ssl);
    if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl)) facts.cipher = SSL_CIPHER_get_name(cipher);
    return facts;
}

void transport::cancel() {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
}

void transport::close(bool reset) {
    boost::system::error_code ignored;
    if (reset) socket_.set_option(asio::socket_base::linger(true, 0), ignored);
    else socket_.shutdown(tcp::socket::shutdown_send, ignored);
    socket_.close(ignored);
}

}  // namespace relaybait::net
