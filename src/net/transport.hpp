#pragma once
// The byte stream under one SMTP session: a TCP socket, upgraded in place to TLS by
// STARTTLS or from the start on smtps. Plain sessions hold no read buffer of their own while
// idle (they wait for readability, then read into a buffer shared by the thread), which is
// what keeps 10,000 idle connections small.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "smtp/engine.hpp"

namespace relaybait::net {

class transport {
public:
    explicit transport(boost::asio::ip::tcp::socket socket);

    // Reads at least one byte; returns an empty span at EOF or on error (ec set).
    boost::asio::awaitable<std::span<const char>> read_some(boost::system::error_code& ec);
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
