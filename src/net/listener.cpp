#include "net/listener.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <stdexcept>

#include "net/session.hpp"

namespace relaybait::net {

namespace asio = boost::asio;
using asio::ip::tcp;

tcp::acceptor open_listener(asio::io_context& io, const std::string& bind_address, std::uint16_t port) {
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(bind_address, ec);
    if (ec) throw std::runtime_error("bad bind address '" + bind_address + "': " + ec.message());
    const tcp::endpoint endpoint(address, port);
    tcp::acceptor acceptor(io);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec && address.is_v6()) acceptor.set_option(asio::ip::v6_only(false), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(4096, ec);
    if (ec) {
        throw std::runtime_error("cannot listen on [" + bind_address + "]:" + std::to_string(port) + ": " + ec.message());
    }
    return acceptor;
}

asio::awaitable<void> accept_loop(app_context& app, tcp::acceptor& acceptor, const config::listener_config& listener) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        if (ec == asio::error::operation_aborted || app.stopping) co_return;
        if (ec) {
            // Out of descriptors or memory: back off instead of spinning, keep serving the others.
            spdlog::warn("accept on {} failed: {}", listener.name, ec.message());
            asio::steady_timer pause(app.io, std::chrono::milliseconds(100));
            co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
            continue;
        }
        asio::co_spawn(app.io, run_session(app, std::move(socket), listener), [](std::exception_ptr error) {
            if (!error) return;
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& e) {
                spdlog::error("session ended by an exception: {}", e.what());
            }
        });
    }
}

}  // namespace relaybait::net
