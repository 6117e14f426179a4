#include "cli/relay_status.hpp"

#include "cli/records_view.hpp"
#include "cli/table.hpp"
#include "common/text.hpp"
#include "net/relay_settings.hpp"

namespace relaybait::cli {
namespace {

constexpr const char* queue_states[] = {"queued", "sending", "deferred", "delivered", "failed"};

// The switches and caps (not the test target) of two limits are the same.
bool same_caps(const relay::relay_limits& a, const relay::relay_limits& b) {
    return a.enabled == b.enabled && a.daily == b.daily && a.per_recipient_daily == b.per_recipient_daily &&
           a.per_sender_daily == b.per_sender_daily && a.per_client_ip_daily == b.per_client_ip_daily &&
           a.per_domain_daily == b.per_domain_daily && a.max_size == b.max_size &&
           a.max_recipients == b.max_recipients && a.test_mode == b.test_mode;
}

std::string caps_text(const relay::relay_limits& l) {
    return "daily " + std::to_string(l.daily) + ", per sender " + std::to_string(l.per_sender_daily) +
           ", per client network " + std::to_string(l.per_client_ip_daily) + ", per recipient " +
           std::to_string(l.per_recipient_daily) + ", per domain " + std::to_string(l.per_domain_daily) + ", max " +
           std::to_string(l.max_recipients) + " recipient(s), max " + std::to_string(l.max_size) + " bytes";
}

// "server": the published caps are the effective ones; "server+config": this configuration is
// stricter somewhere; "config": nothing was published.
std::string caps_source(const relay_overview& o) {
    if (!o.published) return "config";
    return same_caps(o.limits, o.published->limits) ? "server" : "server+config";
}

std::string caps_source_text(const relay_overview& o) {
    if (!o.published) return "this configuration's (no server has published its caps in this database)";
    const auto& p = *o.published;
    const std::string server = "the server's (sensor " + p.sensor + ", pid " + std::to_string(p.pid) +
                               ", published at " + short_time(p.published_at) + " UTC)";
    if (same_caps(o.limits, p.limits)) return server;
    return "the stricter of this configuration's and " + server;
}

}  // namespace

relay_overview read_relay_overview(relay::relay_db& db, const config::relay_config& config, relay::sys_time now) {
    relay_overview overview;
    overview.own = net::relay_limits_from(config);
    overview.published = relay::read_published_limits(db);
    overview.limits = relay::effective_limits(overview.own, overview.published);
    overview.enabled = overview.limits.enabled;
    overview.paused = db.paused();
    overview.day = relay::utc_day(now);
    overview.today = db.counter(overview.day, "daily", "");
    overview.daily = overview.limits.daily;
    overview.test_mode = overview.limits.test_mode;
    overview.test_server = overview.limits.test_server;
    overview.test_recipient = overview.limits.test_recipient;
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
    std::string relay = "enabled";
    if (!o.enabled) {
        const bool server_off = o.published && !o.published->limits.enabled;
        relay = !o.own.enabled && server_off ? "disabled (relay.enabled = false, here and in the server's config)"
                : server_off                 ? "disabled (the server runs with relay.enabled = false)"
                                             : "disabled (relay.enabled = false)";
    }
    std::string test_mode = "off";
    if (o.test_mode)
        test_mode = o.test_server.empty() || o.test_recipient.empty()
                        ? "on: but no test server and recipient are known: relays are failed, never sent"
                        : "on: every relay goes to " + o.test_recipient + " via " + o.test_server;
    render_fields(out, {
                           {"relay", relay},
                           {"paused", o.paused ? "yes (relaybait relay resume)" : "no"},
                           {"today", std::to_string(o.today) + " of " + std::to_string(o.daily) + " (" + o.day + " UTC)"},
                           {"test mode", test_mode},
                           {"caps", caps_text(o.limits)},
                           {"caps from", caps_source_text(o)},
                           {"queue", text::join(queue, ", ")},
                       });
}

boost::json::value to_json(const relay_overview& o) {
    boost::json::object queue;
    for (const auto& [state, count] : o.queue) queue[json_safe(state)] = count;
    const auto& l = o.limits;
    boost::json::object caps{{"daily", l.daily},
                             {"per_recipient_daily", l.per_recipient_daily},
                             {"per_sender_daily", l.per_sender_daily},
                             {"per_client_ip_daily", l.per_client_ip_daily},
                             {"per_domain_daily", l.per_domain_daily},
                             {"max_size", l.max_size},
                             {"max_recipients", l.max_recipients}};
    boost::json::value published = nullptr;
    if (o.published)
        published = boost::json::object{{"published_at", json_safe(o.published->published_at)},
                                        {"pid", o.published->pid},
                                        {"sensor", json_safe(o.published->sensor)},
                                        {"enabled", o.published->limits.enabled},
                                        {"test_mode", o.published->limits.test_mode}};
    return boost::json::object{{"enabled", o.enabled},
                               {"paused", o.paused},
                               {"day", o.day},
                               {"today", o.today},
                               {"daily", o.daily},
                               {"test_mode", o.test_mode},
                               {"test_server", json_safe(o.test_server)},
                               {"test_recipient", json_safe(o.test_recipient)},
                               {"caps", std::move(caps)},
                               {"caps_source", caps_source(o)},
                               {"published", std::move(published)},
                               {"queue", std::move(queue)}};
}

}  // namespace relaybait::cli
