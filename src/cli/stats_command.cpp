// `relaybait stats [--since DATE] [--json]`: what the honeypot has seen and what the relay did.
#include <boost/json/value.hpp>

#include <memory>
#include <sstream>

#include "cli/command_support.hpp"
#include "cli/commands.hpp"
#include "cli/records_view.hpp"
#include "cli/relay_status.hpp"
#include "cli/store_access.hpp"
#include "cli/table.hpp"
#include "relay/relay_db.hpp"

namespace relaybait::cli {
namespace {

namespace json = boost::json;

constexpr std::size_t top_entries = 10;

struct stats_options {
    settings_options settings;
    std::string since;
    CLI::Option* since_flag = nullptr;
    bool json = false;
};

using counts = std::vector<std::pair<std::string, std::uint64_t>>;

json::array counts_json(const counts& entries, const char* key) {
    json::array array;
    for (const auto& [name, count] : entries) array.push_back(json::object{{key, json_safe(name)}, {"count", count}});
    return array;
}

void render_counts(std::ostream& out, const std::string& title, const std::string& header, const counts& entries,
                   const std::string& empty_name) {
    out << '\n' << title << '\n';
    if (entries.empty()) {
        out << "  (none)\n";
        return;
    }
    table view({{"  " + header, 60}, {"COUNT", 12, true}});
    for (const auto& [name, count] : entries)
        view.add_row({"  " + (name.empty() ? empty_name : name), std::to_string(count)});
    view.render(out);
}

int stats_command(const stats_options& options, console io) {
    const config::settings settings = load_settings(options.settings);
    std::optional<std::string> since;
    if (options.since_flag && options.since_flag->count() != 0) since = options.since;
    store::message_statistics messages;
    std::uint64_t sessions = 0, credentials = 0;
    {
        auto db = open_store(settings.data_dir);
        messages = db->message_stats(since, top_entries);
        sessions = db->count_sessions();
        credentials = db->count_credentials();
    }
    // Read only: no migration, no write (an older server's database keeps its schema).
    relay::relay_db relay_db(settings.data_dir / "relaybait.db", relay::relay_db::mode::read_only);
    const relay_overview relay = read_relay_overview(relay_db, settings.relay);

    if (options.json) {
        print_json(io.out, json::object{{"since", since ? json::value(json_safe(*since)) : json::value(nullptr)},
                                        {"messages", json::object{{"total", messages.total},
                                                                  {"dropped", messages.dropped},
                                                                  {"by_folder", counts_json(messages.by_folder, "folder")},
                                                                  {"by_kind", counts_json(messages.by_kind, "kind")},
                                                                  {"top_client_ips", counts_json(messages.top_client_ips, "ip")},
                                                                  {"top_senders", counts_json(messages.top_senders, "sender")}}},
                                        {"sessions", sessions},
                                        {"credentials", credentials},
                                        {"relay", to_json(relay)}});
        return exit_ok;
    }
    const std::string all_time = since ? " (all time)" : "";
    io.out << "totals\n";
    render_fields(io.out, {{"  messages", std::to_string(messages.total) + (since ? " since " + *since : std::string())},
                           {"  dropped", std::to_string(messages.dropped)},
                           {"  sessions", std::to_string(sessions) + all_time},
                           {"  credentials", std::to_string(credentials) + all_time}});
    render_counts(io.out, "by folder", "FOLDER", messages.by_folder, "inbox");
    render_counts(io.out, "by kind", "KIND", messages.by_kind, "(unclassified)");
    render_counts(io.out, "top client IPs", "CLIENT IP", messages.top_client_ips, "(none)");
    render_counts(io.out, "top senders", "SENDER", messages.top_senders, "<>");
    io.out << "\nrelay\n";
    std::ostringstream relay_text;
    render_relay_overview(relay_text, relay);
    std::istringstream lines(relay_text.str());
    for (std::string line; std::getline(lines, line);) io.out << "  " << line << '\n';
    return exit_ok;
}

}  // namespace

void add_stats_command(CLI::App& app, command_runner& selected, console io) {
    auto options = std::make_shared<stats_options>();
    auto* command = app.add_subcommand("stats", "counts of messages, sessions, credentials and relays");
    add_settings_options(*command, options->settings);
    options->since_flag = command->add_option("--since", options->since, "only messages received since this date")
                              ->transform(since_validator());
    command->add_flag("--json", options->json, "print one JSON document");
    command->callback([&selected, options, io] { selected = [options, io] { return stats_command(*options, io); }; });
}

}  // namespace relaybait::cli
