#include "net/server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <csignal>
#include <functional>
#include <fstream>
#include <list>

#include "net/app_context.hpp"
#include "net/idle_memory.hpp"
#include "net/listener.hpp"
#include "net/live_rules.hpp"
#include "net/relay_recovery.hpp"
#include "net/relay_settings.hpp"
#include "net/self_identity.hpp"
#include "net/tls_context.hpp"
#include "relay/published_limits.hpp"
#include "store/database.hpp"

namespace relaybait::net {

namespace asio = boost::asio;

namespace {

smtp::engine_config engine_config_from(const config::settings& settings) {
    smtp::engine_config engine;
    engine.bounds = settings.limits;
    engine.auth = settings.auth;
    engine.local_users = settings.local_users;
    return engine;
}

// "::" means every interface; on a host without IPv6 that is 0.0.0.0.
asio::ip::tcp::acceptor open_any_family(asio::io_context& io, const std::string& address, std::uint16_t port) {
    try {
        return open_listener(io, address, port);
    } catch (const std::runtime_error& error) {
        if (address != "::") throw;
        spdlog::warn("{}; listening on IPv4 only", error.what());
        return open_listener(io, "0.0.0.0", port);
    }
}

struct bound_listener {
    const config::listener_config* listener;
    asio::ip::tcp::acceptor acceptor;
};

std::list<bound_listener> open_listeners(asio::io_context& io, const config::settings& settings) {
    std::list<bound_listener> bound;
    for (const auto& listener : settings.listeners) {
        if (!listener.enabled) continue;
        for (const auto& address : settings.bind) {
            const auto port = settings.effective_port(listener);
            bound.push_back({&listener, open_any_family(io, address, port)});
            spdlog::info("listening: {} on [{}]:{}", listener.name, address, port);
        }
    }
    return bound;
}

// DATA/relaybait.pid: how `relaybait rules reload` finds the server to send SIGHUP to.
class pid_file {
public:
    explicit pid_file(std::filesystem::path path) : path_(std::move(path)) {
        std::ofstream out(path_, std::ios::trunc);
        out << ::getpid() << '\n';
    }
    ~pid_file() {
        std::error_code ec;
        std::filesystem::remove(path_, ec);
    }
    pid_file(const pid_file&) = delete;
    pid_file& operator=(const pid_file&) = delete;

private:
    std::filesystem::path path_;
};

// Returns when every session has ended or `grace` has passed, whichever comes first.
asio::awaitable<void> wait_for_sessions(const session_registry& registry, std::chrono::milliseconds grace) {
    asio::steady_timer tick(co_await asio::this_coro::executor);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (registry.total() > 0 && std::chrono::steady_clock::now() < deadline) {
        tick.expires_after(std::chrono::milliseconds(20));
        co_await tick.async_wait(asio::use_awaitable);
    }
}

void log_identity(const rules::self_identity& self) {
    std::string addresses;
    for (const auto* family : {&self.ipv4, &self.ipv6})
        for (const auto& address : *family) addresses += (addresses.empty() ? "" : ", ") + address;
    if (addresses.empty())
        spdlog::warn("identity: no public address known: rules using $self.ip match nothing "
                     "(set identity.ipv4/ipv6 or identity.discover = true)");
    else
        spdlog::info("identity: $self.ip = {}", addresses);
}

}  // namespace

int serve(const config::settings& settings) {
    // A peer that vanishes mid-write is an error code on that session, never a process signal.
    std::signal(SIGPIPE, SIG_IGN);
    std::filesystem::create_directories(settings.data_dir);
    // SQLite (process-wide, before its first use): no bulk preallocation of 20 cache pages per
    // connection; every connection allocates its cache pages one by one as it reads.
    store::configure_sqlite_for_server();
    asio::io_context io(1);
    auto tls = make_server_tls_context(settings);

    store::ingest ingest(store::ingest_options{settings.data_dir});  // takes DATA/relaybait.lock first
    events::event_log events(events::event_log_options{settings.data_dir / "events.jsonl", settings.events.rotate_bytes,
                                                       settings.events.keep_files});
    const auto identity = discover_identity(settings);
    log_identity(identity);
    live_rules rules(settings, identity);  // a bad rules file stops the start here (exit 2)
    save_identity(settings.data_dir, identity);
    relay::relay_service relay(relay_options_from(settings), &ingest, &events);
    // Before anything is relayed or accepted: the caps and switches this server runs with, for
    // every other process on the database (published_limits.hpp: a CLI `relaybait relay ID`
    // books against the stricter of these and its own).
    relay::publish_limits(relay.db(), relay_limits_from(settings.relay), settings.sensor_name(), ::getpid());
    relay.start();
    resubmit_unsubmitted_relays(settings, *rules.store().current(), relay);
    if (!settings.relay.enabled) spdlog::warn("relay: disabled (relay.enabled = false): nothing is relayed");
    session_registry registry(settings.limits.sessions_total, settings.limits.sessions_per_ip);
    pid_file pid(settings.data_dir / "relaybait.pid");
    app_context app{settings,
                    io,
                    tls,
                    ingest,
                    events,
                    engine_config_from(settings),
                    registry,
                    {},
                    queue_id_generator(std::random_device{}()),
                    settings.sensor.empty() ? settings.hostname : settings.sensor,
                    rules.store(),
                    &relay};
    if (settings.relay.test_mode)
        spdlog::info("relay: test mode: every relay goes to {} for {}", settings.relay.test_server,
                     settings.relay.test_recipient);
    if (settings.relay.allow_private_destinations)
        spdlog::warn("relay: allow_private_destinations is on: probes may be relayed to loopback, private and "
                     "link-local addresses their MX records name (meant for tests)");

    auto listeners = open_listeners(io, settings);
    for (auto& bound : listeners) asio::co_spawn(io, accept_loop(app, bound.acceptor, *bound.listener), asio::detached);
    // Work that must not stall the sessions: rule reloads, giving memory back when quiet.
    // Declared after what its jobs use, so that it is joined before they are destroyed.
    idle_memory_release idle_release(registry, ingest, std::chrono::seconds(10));
    asio::thread_pool background(1);
    // After a burst, glibc keeps the pages of freed session memory (free chunks between the few
    // blocks that stay, such as asio's pooled per-socket reactor state). Measured after 10,000
    // idle sessions closed: RssAnon 43 -> 33 MB, 7 ms of malloc_trim.
    const auto give_memory_back = [&] {
        if (idle_release.due(session_registry::clock::now()))
            asio::post(background, [&] { idle_release.release(); });
        else if (registry.burst_ended())
            asio::post(background, release_free_heap_pages);
    };
    asio::co_spawn(io, registry.run_sweeper(std::chrono::milliseconds(500), give_memory_back), asio::detached);

    // SIGHUP: re-read the rules on the background thread (reading the file and compiling the
    // regular expressions must not stall the sessions); a bad file keeps the last good rules.
    asio::signal_set hangup(io, SIGHUP);
    std::function<void()> await_hangup = [&] {
        hangup.async_wait([&](const boost::system::error_code& ec, int) {
            if (ec) return;
            asio::post(background, [&] {
                const bool ok = rules.reload();
                events.emit_raw(boost::json::object{{"eventid", ok ? "rules.reloaded" : "rules.reload_failed"},
                                                    {"sensor", app.sensor}});
            });
            await_hangup();
        });
    };
    await_hangup();

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        spdlog::info("signal {}: shutting down", signal);
        app.stopping = true;
        hangup.cancel();
        for (auto& bound : listeners) bound.acceptor.close();
        registry.stop();
        registry.expire_all();
        // Sessions wind down on their own; one that does not within the grace period is cut.
        asio::co_spawn(io, wait_for_sessions(registry, std::chrono::seconds(5)), [&io](std::exception_ptr) { io.stop(); });
    });
    // Start-up is over: the pages of code and constants only it ran, and its freed heap, go back.
    const std::size_t startup_code = release_unused_pages();
    spdlog::info("relaybait serving as {} (data in {}; {} kB resident, {} kB of start-up code released)",
                 settings.hostname, settings.data_dir.string(), resident_kb(), startup_code / 1024);
    io.run();
    relay.stop();
    events.flush();
    const auto stored = ingest.stats();
    spdlog::info("store: {} messages acknowledged in {} group commits (largest {}), {} failed; "
                 "time in file syncs {} ms, renames {} ms, SQLite transactions {} ms",
                 stored.committed, stored.batches, stored.largest_batch, stored.failed, stored.file_sync_us / 1000,
                 stored.rename_us / 1000, stored.db_us / 1000);
    return 0;
}

}  // namespace relaybait::net
