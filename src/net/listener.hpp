#pragma once
// One listening socket per (bind address, listener); each accepted connection becomes a
// session coroutine on the same io_context.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "config/config.hpp"
#include "net/app_context.hpp"

namespace relaybait::net {

// Opens the socket (IPV6_V6ONLY off for "::" so one socket takes IPv4 too). Throws on failure
// with the address and port in the message.
boost::asio::ip::tcp::acceptor open_listener(boost::asio::io_context& io, const std::string& bind_address,
                                             std::uint16_t port);

boost::asio::awaitable<void> accept_loop(app_context& app, boost::asio::ip::tcp::acceptor& acceptor,
                                         const config::listener_config& listener);

}  // namespace relaybait::net
