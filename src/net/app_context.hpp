#pragma once
// What every session shares, built once by serve() and passed by reference; no globals.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

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
