#include "net/relay_recovery.hpp"

#include <spdlog/spdlog.h>

#include <ctime>
#include <set>

#include "store/database.hpp"
#include "store/message_admin.hpp"

namespace relaybait::net {

namespace {

std::string iso_day_ago() {
    const std::time_t then = std::time(nullptr) - 24 * 3600;
    std::tm utc{};
    gmtime_r(&then, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    return text;
}

}  // namespace

relay::relay_request relay_request_for(const store::message_record& message, const std::filesystem::path& file) {
    relay::relay_request request;
    request.message_id = std::to_string(message.id);
    request.file = file.string();
    request.sha256 = message.sha256;
    request.mail_from = message.mail_from;
    request.recipients = message.recipients;
    request.client_ip = message.peer_ip;
    request.size = message.size;
    return request;
}

std::size_t resubmit_unsubmitted_relays(const config::settings& settings, const rules::rule_set& rules,
                                        relay::relay_service& relay) {
    std::set<std::string, std::less<>> relay_rules;
    std::set<std::string, std::less<>> kinds;
    for (const auto& rule : rules.rules()) {
        if (rule.hook != rules::hook_point::data || !rule.actions.relay || !rule.enabled) continue;
        relay_rules.insert(rule.name);
        kinds.insert(rule.kind);
    }
    if (relay_rules.empty()) return 0;

    store::database db(settings.data_dir / "relaybait.db", store::database::mode::read_only);
    std::vector<store::message_record> candidates;
    for (const auto& kind : kinds) {
        store::list_filter filter;
        filter.limit = 10'000;
        filter.since = iso_day_ago();
        filter.kind = kind;
        for (auto& message : db.list_messages(filter))
            if (message.relay_requested && relay_rules.contains(message.rule) && !message.dropped)
                candidates.push_back(std::move(message));
    }
    if (candidates.empty()) return 0;

    std::vector<std::string> ids;
    for (const auto& message : candidates) ids.push_back(std::to_string(message.id));
    const auto without = relay.db().without_decision(ids);
    const std::set<std::string, std::less<>> missing(without.begin(), without.end());
    std::size_t submitted = 0;
    for (const auto& message : candidates) {
        if (!missing.contains(std::to_string(message.id))) continue;
        const auto file = store::locate_message_file(settings.data_dir, message);
        if (!file) continue;
        relay.submit(relay_request_for(message, *file));
        ++submitted;
    }
    if (submitted > 0)
        spdlog::info("relay: {} probe(s) accepted before the last stop had no relay decision: submitted again", submitted);
    return submitted;
}

}  // namespace relaybait::net
