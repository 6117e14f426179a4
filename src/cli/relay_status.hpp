#pragma once
// The relay at a glance, for `relaybait relay status` and `relaybait stats`: kill switch, pause,
// today's copies against the daily cap, test mode, the caps and the queue by state.
// The switches and caps shown are the effective ones, what safety::check_and_reserve applies:
// the stricter of this command's configuration and what the server published at its start
// (relay/published_limits.hpp), or the configuration's alone when no server ever published.
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>

#include "config/config.hpp"
#include "relay/published_limits.hpp"
#include "relay/relay_db.hpp"

namespace relaybait::cli {

struct relay_overview {
    bool enabled = true;  // relay.enabled (the kill switch), effective
    bool paused = false;  // relaybait relay pause
    std::string day;      // UTC "YYYY-MM-DD"
    std::uint64_t today = 0;
    std::uint64_t daily = 0;  // effective
    bool test_mode = false;   // effective
    std::string test_server, test_recipient;
    std::map<std::string, std::uint64_t> queue;  // state -> rows (queued, sending, deferred, delivered, failed)
    relay::relay_limits limits;                   // effective: what the safety check applies
    relay::relay_limits own;                      // this command's configuration
    std::optional<relay::published_limits> published;  // the server's, when it published them
};

relay_overview read_relay_overview(relay::relay_db& db, const config::relay_config& config,
                                   relay::sys_time now = std::chrono::system_clock::now());
void render_relay_overview(std::ostream& out, const relay_overview& overview);
boost::json::value to_json(const relay_overview& overview);

}  // namespace relaybait::cli
