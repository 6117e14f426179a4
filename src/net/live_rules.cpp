#include "net/live_rules.hpp"

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>

#include "events/event_log.hpp"

namespace relaybait::net {

live_rules::live_rules(const config::settings& settings, rules::self_identity identity)
    : status_file_(settings.data_dir / "rules-status.json"), store_(settings.rules.resolved_file, std::move(identity)) {
    if (auto error = store_.reload()) {
        write_status(false, std::string(error->what()));
        throw config::config_error(error->file(), error->line(), error->column(), error->message());
    }
    write_status(true, "");
    spdlog::info("rules: {} rules ({} enabled) from {}", store_.current()->rules().size(),
                 std::count_if(store_.current()->rules().begin(), store_.current()->rules().end(),
                               [](const rules::rule& r) { return r.enabled; }),
                 origin());
}

bool live_rules::reload() {
    if (auto error = store_.reload()) {
        spdlog::error("rules: reload refused, the last good rules stay active: {}", std::string(error->what()));
        write_status(false, std::string(error->what()));
        return false;
    }
    spdlog::info("rules: reloaded {} rules from {}", store_.current()->rules().size(), origin());
    write_status(true, "");
    return true;
}

std::string live_rules::origin() const {
    return store_.path().empty() ? std::string(rules::default_rules_origin) : store_.path().string();
}

void live_rules::write_status(bool ok, const std::string& error) {
    const auto current = store_.current();
    std::int64_t enabled = 0;
    for (const auto& rule : current->rules()) enabled += rule.enabled ? 1 : 0;
    boost::json::object status{{"generation", ++generation_},
                               {"ok", ok},
                               {"file", origin()},
                               {"rules", current->rules().size()},
                               {"enabled", enabled},
                               {"error", error},
                               {"at", events::iso8601_utc_now()}};
    // tmp + rename: a reader never sees half a file.
    const auto tmp = status_file_.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << boost::json::serialize(status) << '\n';
        if (!out) {
            spdlog::warn("rules: cannot write {}", tmp);
            return;
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, status_file_, ec);
    if (ec) spdlog::warn("rules: cannot write {}: {}", status_file_.string(), ec.message());
}

}  // namespace relaybait::net
