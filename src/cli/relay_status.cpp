#include "cli/relay_status.hpp"

#include "cli/records_view.hpp"
#include "cli/table.hpp"
#include "common/text.hpp"

namespace relaybait::cli {
namespace {

constexpr const char* queue_states[] = {"queued", "sending", "deferred", "delivered", "failed"};

}  // namespace

relay_overview read_relay_overview(relay::relay_db& db, const config::relay_config& config, relay::sys_time now) {
    relay_overview overview;
    overview.enabled = config.enabled;
    overview.paused = db.paused();
    overview.day = relay::utc_day(now);
    overview.today = db.counter(overview.day, "daily", "");
    overview.daily = config.daily;
    overview.test_mode = config.test_mode;
    overview.test_server = config.test_server;
    overview.test_recipient = config.test_recipient;
    for (const char* state : queue_states) overview.queue[state] = 0;
    for (const auto& [state, rows] : db.count_queue_by_state()) overview.queue[state] = rows;
    return overview;
}

void render_relay_overview(std::ostream& out, const relay_overview& o) {
    std::vector<std::string> queue;
    for (const char* state : queue_states) {
        const auto found = o.queue.find(state);
        queue.push_back(std::to_string(found == o.queue.end() ? 0 : found->second) + " " + state);
    }
    for (const auto& [state, count] : o.queue) {  // a state this build does not know
        bool known = false;
        for (const char* name : queue_states) known = known || state == name;
        if (!known) queue.push_back(std::to_string(count) + " " + state);
    }
    render_fields(out, {
                           {"relay", o.enabled ? "enabled" : "disabled (relay.enabled = false)"},
                           {"paused", o.paused ? "yes (relaybait relay resume)" : "no"},
                           {"today", std::to_string(o.today) + " of " + std::to_string(o.daily) + " (" + o.day + " UTC)"},
                           {"test mode", o.test_mode ? "on: every relay goes to " + o.test_recipient + " via " + o.test_server
                                                     : "off"},
                           {"queue", text::join(queue, ", ")},
                       });
}

boost::json::value to_json(const relay_overview& o) {
    boost::json::object queue;
    for (const auto& [state, count] : o.queue) queue[json_safe(state)] = count;
    return boost::json::object{{"enabled", o.enabled},
                               {"paused", o.paused},
                               {"day", o.day},
                               {"today", o.today},
                               {"daily", o.daily},
                               {"test_mode", o.test_mode},
                               {"test_server", json_safe(o.test_server)},
                               {"test_recipient", json_safe(o.test_recipient)},
                               {"queue", std::move(queue)}};
}

}  // namespace relaybait::cli
