#pragma once
// One client connection: a coroutine that owns its transport and its engine, feeds the
// engine what arrives, writes what it answers and serves its requests (TLS, commit, close).
// Every session is recorded: a row with its transcript, events in events.jsonl.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "config/config.hpp"
#include "net/app_context.hpp"

namespace relaybait::net {

boost::asio::awaitable<void> run_session(app_context& app, boost::asio::ip::tcp::socket socket,
                                         const config::listener_config& listener);

}  // namespace relaybait::net
