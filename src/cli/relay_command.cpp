// `relaybait relay pause|resume|status`, `relaybait relay ID [--yes]`, `relaybait relays list`.
#include <boost/json/value.hpp>

#include <ctime>
#include <map>
#include <memory>

#include "cli/command_support.hpp"
#include "cli/commands.hpp"
#include "cli/records_view.hpp"
#include "net/relay_settings.hpp"
#include "cli/relay_status.hpp"
#include "cli/store_access.hpp"
#include "cli/table.hpp"
#include "common/text.hpp"
#include "relay/relay_db.hpp"
#include "relay/published_limits.hpp"
#include "relay/safety.hpp"
#include "store/message_admin.hpp"

namespace relaybait::cli {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

// The relay tables live in DATA/relaybait.db. Pausing before the first `serve` is allowed (the
// file is created, read_write); the inspection commands (status, list) need a database that
// exists and open it read_only: no migration, no write (relay_db.hpp), so an older server's
// database keeps its schema and a read-only copy can be inspected.
std::unique_ptr<relay::relay_db> open_relay_db(const fs::path& data_dir, relay::relay_db::mode mode) {
    std::error_code ignored;
    if (!fs::is_directory(data_dir, ignored))
        throw command_failure("no data directory at " + data_dir.string() + " (give --data-dir or --config)");
    const fs::path file = data_dir / "relaybait.db";
    if (mode == relay::relay_db::mode::read_only && !fs::exists(file, ignored))
        throw command_failure("no database at " + file.string() + " (has relaybait served from this directory?)");
    return std::make_unique<relay::relay_db>(file, mode);
}

// Unix seconds -> "2026-11-23 18:07:03" (UTC); "" for 0.
std::string unix_time(std::int64_t seconds) {
    if (seconds <= 0) return "";
    const std::time_t t = static_cast<std::time_t>(seconds);
    std::tm utc{};
    if (!gmtime_r(&t, &utc)) return std::to_string(seconds);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &utc);
    return text;
}

// ---- relay pause|resume|status ---------------------------------------------------------------

int pause_command(const settings_options& options, bool paused, console io) {
    const config::settings settings = load_settings(options);
    auto db = open_relay_db(settings.data_dir, relay::relay_db::mode::read_write);
    const bool was = db->paused();
    db->set_paused(paused);
    if (paused)
        io.out << (was ? "relay already paused" : "relay paused") << ": nothing is queued or sent until `relaybait relay resume`\n";
    else
        io.out << (was ? "relay resumed" : "relay was not paused") << ": queued relays are sent within the caps\n";
    return exit_ok;
}

struct status_options {
    settings_options settings;
    bool json = false;
};

int status_command(const status_options& options, console io) {
    const config::settings settings = load_settings(options.settings);
    auto db = open_relay_db(settings.data_dir, relay::relay_db::mode::read_only);
    const relay_overview overview = read_relay_overview(*db, settings.relay);
    if (options.json) print_json(io.out, to_json(overview));
    else render_relay_overview(io.out, overview);
    return exit_ok;
}

// ---- relay ID --------------------------------------------------------------------------------

struct relay_options {
    settings_options settings;
    std::string id;
    bool yes = false;
};

int relay_message_command(const relay_options& options, console io) {
    const config::settings settings = load_settings(options.settings);
    const store::message_record message = find_message(*open_store(settings.data_dir), options.id);
    const auto file = store::locate_message_file(settings.data_dir, message);  // nullopt for a dropped message
    if (!file)
        throw command_failure("message " + std::to_string(message.id) +
                              " has no stored file (dropped or deleted): nothing to relay");
    field_list fields{
        {"id", std::to_string(message.id)},
        {"received", message.received_at},
        {"client ip", message.peer_ip},
        {"from", "<" + message.mail_from + ">"},
        {"recipients", text::join(message.recipients, ", ")},
        {"subject", message.headers.subject},
        {"size", std::to_string(message.size)},
    };
    if (!message.rule.empty()) fields.emplace_back("rule", message.rule);
    if (!message.kind.empty()) fields.emplace_back("kind", message.kind);
    render_fields(io.out, fields);
    if (!options.yes &&
        !confirm(io, "Relay this message to " + std::to_string(message.recipients.size()) + " recipient(s)?")) {
        io.err << "relaybait: not confirmed; nothing was queued\n";
        return exit_failure;
    }

    relay::relay_request request;
    request.message_id = std::to_string(message.id);
    request.file = fs::absolute(*file).string();
    request.sha256 = message.sha256;
    request.mail_from = message.mail_from;
    request.recipients = message.recipients;
    request.client_ip = message.peer_ip;
    request.size = message.size;
    request.manual = true;
    relay::safety safety(settings.data_dir / "relaybait.db", net::relay_limits_from(settings.relay));
    // No server has published its caps here yet (it never ran this version): only this
    // command's own configuration bounds the request, which without --config is the defaults.
    if (!relay::read_published_limits(safety.db()))
        io.err << "relaybait: warning: no server has published its relay caps in this database; the caps of "
               << (settings.config_file.empty() ? std::string("the built-in defaults (no --config)")
                                                : "the configuration " + escape_for_terminal(settings.config_file.string()))
               << " apply\n";
    const relay::decision decision = safety.check_and_reserve(request);
    if (!decision.allowed) {
        io.err << "relaybait: refused by the " << decision.cap << " cap\n";
        return exit_failure;
    }
    io.out << "queued: " << decision.recipients.size()
           << " recipient(s); the running server delivers them (relaybait relays list)\n";
    return exit_ok;
}

// ---- relays list -----------------------------------------------------------------------------

struct list_relays_options {
    settings_options settings;
    std::size_t limit = 50;
    bool json = false;
    bool refused = false;
};

void render_queue(std::ostream& out, const std::vector<relay::queue_row>& rows) {
    table view({{"ID", 10, true}, {"STATE", 9}, {"TRIES", 5, true}, {"RECIPIENT", 50}, {"MESSAGE", 12, true},
                {"BY", 8}, {"CREATED", 19}, {"UPDATED", 19}, {"NEXT", 19}, {"LAST RESULT", 80}});
    for (const auto& row : rows) {
        const bool waiting = row.state == "queued" || row.state == "deferred";
        view.add_row({std::to_string(row.id), row.state, std::to_string(row.attempts), row.recipient, row.message_id,
                      row.manual ? "operator" : "rule", short_time(row.created_at), short_time(row.updated_at),
                      waiting ? unix_time(row.next_attempt_at) : "", row.last_result});
    }
    view.render(out);
}

json::value queue_json(const std::vector<relay::queue_row>& rows) {
    json::array array;
    for (const auto& row : rows)
        array.push_back(json::object{{"id", row.id},
                                     {"state", json_safe(row.state)},
                                     {"attempts", row.attempts},
                                     {"recipient", json_safe(row.recipient)},
                                     {"message_id", json_safe(row.message_id)},
                                     {"mail_from", json_safe(row.mail_from)},
                                     {"client_ip", json_safe(row.client_ip)},
                                     {"size", row.size},
                                     {"manual", row.manual},
                                     {"created_at", json_safe(row.created_at)},
                                     {"updated_at", json_safe(row.updated_at)},
                                     {"next_attempt_at", row.next_attempt_at},
                                     {"last_result", json_safe(row.last_result)},
                                     {"relayed_path", json_safe(row.relayed_path)},
                                     {"test_mode", row.test_mode}});
    return array;
}

void render_refusals(std::ostream& out, const std::vector<relay::decision_row>& rows) {
    table view({{"AT", 19}, {"MESSAGE", 12, true}, {"BY", 8}, {"SENDER", 50}, {"CLIENT IP", 39}, {"CAP", 16}});
    for (const auto& row : rows)
        view.add_row({short_time(row.at), row.message_id, row.manual ? "operator" : "rule", row.mail_from, row.client_ip,
                      row.cap});
    view.render(out);
}

json::value refusals_json(const std::vector<relay::decision_row>& rows) {
    json::array array;
    for (const auto& row : rows)
        array.push_back(json::object{{"id", row.id},
                                     {"at", json_safe(row.at)},
                                     {"message_id", json_safe(row.message_id)},
                                     {"mail_from", json_safe(row.mail_from)},
                                     {"recipients", json_safe(row.recipients_json)},
                                     {"client_ip", json_safe(row.client_ip)},
                                     {"size", row.size},
                                     {"manual", row.manual},
                                     {"cap", json_safe(row.cap)}});
    return array;
}

int list_relays_command(const list_relays_options& options, console io) {
    const config::settings settings = load_settings(options.settings);
    auto db = open_relay_db(settings.data_dir, relay::relay_db::mode::read_only);
    if (options.refused) {
        // Newest first; refusals are picked from the newest decisions (bounded read).
        std::vector<relay::decision_row> refused;
        for (auto& row : db->list_decisions(std::max<std::size_t>(options.limit * 20, 10'000))) {
            if (row.allowed) continue;
            refused.push_back(std::move(row));
            if (refused.size() == options.limit) break;
        }
        if (options.json) print_json(io.out, refusals_json(refused));
        else render_refusals(io.out, refused);
        return exit_ok;
    }
    const auto rows = db->list_queue(options.limit);
    if (options.json) print_json(io.out, queue_json(rows));
    else render_queue(io.out, rows);
    return exit_ok;
}

}  // namespace

void add_relay_commands(CLI::App& app, command_runner& selected, console io) {
    auto* relay = app.add_subcommand("relay", "relay one stored message by hand, or pause, resume and inspect the relay");
    relay->require_subcommand(0, 1);
    auto message = std::make_shared<relay_options>();
    relay->add_option("ID", message->id, "message id or queue id to relay (the caps apply)");
    add_settings_options(*relay, message->settings);
    relay->add_flag("--yes,-y", message->yes, "do not ask for confirmation");

    auto pause = std::make_shared<settings_options>();
    auto* pause_cmd = relay->add_subcommand("pause", "stop queuing and sending relays (shared by every sensor on the database)");
    add_settings_options(*pause_cmd, *pause);
    pause_cmd->callback([&selected, pause, io] { selected = [pause, io] { return pause_command(*pause, true, io); }; });

    auto resume = std::make_shared<settings_options>();
    auto* resume_cmd = relay->add_subcommand("resume", "undo relay pause");
    add_settings_options(*resume_cmd, *resume);
    resume_cmd->callback([&selected, resume, io] { selected = [resume, io] { return pause_command(*resume, false, io); }; });

    auto status = std::make_shared<status_options>();
    auto* status_cmd = relay->add_subcommand("status", "paused or not, today's count against the daily cap, the queue");
    add_settings_options(*status_cmd, status->settings);
    status_cmd->add_flag("--json", status->json, "print one JSON document");
    status_cmd->callback([&selected, status, io] { selected = [status, io] { return status_command(*status, io); }; });

    // Subcommand callbacks run first; without one, ID is required.
    relay->callback([&selected, relay, message, io] {
        if (!relay->get_subcommands().empty()) return;
        if (message->id.empty()) throw CLI::RequiredError("ID (or one of pause, resume, status)");
        selected = [message, io] { return relay_message_command(*message, io); };
    });

    auto* relays = app.add_subcommand("relays", "the relay queue and the refused relays");
    relays->require_subcommand(1);
    auto list = std::make_shared<list_relays_options>();
    auto* list_cmd = relays->add_subcommand("list", "queued and finished relays, newest first (--refused: refusals)");
    add_settings_options(*list_cmd, list->settings);
    list_cmd->add_option("--limit", list->limit, "at most this many, newest first")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}))
        ->capture_default_str();
    list_cmd->add_flag("--json", list->json, "print one JSON document instead of a table");
    list_cmd->add_flag("--refused", list->refused, "list the refused relay requests and the cap that refused each");
    list_cmd->callback([&selected, list, io] { selected = [list, io] { return list_relays_command(*list, io); }; });
}

}  // namespace relaybait::cli
