#pragma once
// What every session shares, built once by serve() and passed by reference; no globals.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include <cstdint>
#include <random>
#include <string>

#include "config/config.hpp"
#include "events/event_log.hpp"
#include "net/queue_id.hpp"
#include "net/session_registry.hpp"
#include "relay/relay_service.hpp"
#include "rules/rules.hpp"
#include "smtp/engine.hpp"
#include "store/ingest.hpp"

namespace relaybait::net {

// The engine's clock and randomness in production.
class system_environment final : public smtp::environment {
public:
    system_environment();
    std::chrono::system_clock::time_point now() override;
    std::uint64_t random() override;

private:
    std::mt19937_64 generator_;
};

// The session id that follows `last`: the start in milliseconds above 20 random bits
// ((unix_ms << 20) | low 20 bits of `random`), or last + 1 when that is not larger (the clock
// stepped back, or the same millisecond drew a smaller random part). Pure, for the tests.
std::uint64_t next_session_id(std::uint64_t last, std::int64_t unix_ms, std::uint64_t random);
// 16 lowercase hex digits, zero-padded: fixed width, so ids sort as text as they do as numbers
// (the store keeps them as TEXT).
std::string format_session_id(std::uint64_t id);

struct app_context {
    const config::settings& settings;
    boost::asio::io_context& io;
    boost::asio::ssl::context& tls;
    store::ingest& ingest;
    events::event_log& events;
    smtp::engine_config engine;
    session_registry& registry;
    system_environment environment;
    queue_id_generator queue_ids;
    std::string sensor;
    const rules::rule_store& rules;
    relay::relay_service* relay = nullptr;  // the kill switch is relay.enabled, checked by the relay's caps
    bool stopping = false;

    // 16 hex digits: the start in milliseconds (44 bits) and 20 random bits, strictly
    // increasing (unique) within the process. io thread only.
    std::string new_session_id();
    std::uint64_t last_session_id = 0;
};

}  // namespace relaybait::net
