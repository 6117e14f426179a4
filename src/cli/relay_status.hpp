#pragma once
// The relay at a glance, for `relaybait relay status` and `relaybait stats`: kill switch, pause,
// today's copies against the daily cap, test mode and the queue by state.
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <ostream>
#include <string>

#include "config/config.hpp"
#include "relay/relay_db.hpp"

namespace relaybait::cli {

struct relay_overview {
    bool enabled = true;  // relay.enabled (the kill switch)
    bool paused = false;  // relaybait relay pause
    std::string day;      // UTC "YYYY-MM-DD"
    std::uint64_t today = 0;
    std::uint64_t daily = 0;
    bool test_mode = false;
    std::string test_server, test_recipient;
    std::map<std::string, std::uint64_t> queue;  // state -> rows (queued, sending, deferred, delivered, failed)
};

relay_overview read_relay_overview(relay::relay_db& db, const config::relay_config& config,
                                   relay::sys_time now = std::chrono::system_clock::now());
void render_relay_overview(std::ostream& out, const relay_overview& overview);
boost::json::value to_json(const relay_overview& overview);

}  // namespace relaybait::cli
