// `relaybait rules check [FILE]`, `rules test [RULE]`, `rules apply RULE`, `rules reload`.
#include <signal.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "cli/command_support.hpp"
#include "cli/commands.hpp"
#include "cli/records_view.hpp"
#include "cli/rules_scan.hpp"
#include "cli/store_access.hpp"
#include "cli/table.hpp"
#include "common/text.hpp"
#include "net/self_identity.hpp"
#include "rules/rules.hpp"
#include "store/message_admin.hpp"

namespace relaybait::cli {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

// ---- loading rules ----------------------------------------------------------------------------

// The rules file a command works on: the one given, else the active one (settings), else the
// embedded defaults (path empty).
struct rules_source {
    fs::path path;
    std::string name() const { return path.empty() ? std::string(rules::default_rules_origin) : path.string(); }
};

rules_source source_of(const config::settings& settings, const std::string& given) {
    return {given.empty() ? settings.rules.resolved_file : fs::path(given)};
}

rules::rule_set load_rules(const rules_source& source, const rules::self_identity& self) {
    if (source.path.empty())
        return rules::rule_set::parse(rules::default_rules_text(), std::string(rules::default_rules_origin), self);
    return rules::rule_set::load(source.path, self);
}

// What the running server used for $self (saved at its start), else what the configuration gives.
rules::self_identity server_identity(const config::settings& settings) {
    if (auto saved = net::load_saved_identity(settings.data_dir)) return *saved;
    return net::identity_from_config(settings);
}

std::size_t enabled_count(const rules::rule_set& set) {
    std::size_t enabled = 0;
    for (const auto& rule : set.rules()) enabled += rule.enabled ? 1 : 0;
    return enabled;
}

std::string plural(std::size_t count, const std::string& word) {
    return std::to_string(count) + " " + word + (count == 1 ? "" : "s");
}

std::string summary(const rules::rule_set& set) {
    return plural(set.rules().size(), "rule") + " (" + std::to_string(enabled_count(set)) + " enabled)";
}

std::string warning_text(const rules::diagnostic& warning) {
    return warning.file + ":" + std::to_string(warning.line) + ":" + std::to_string(warning.column) +
           ": warning: " + warning.message;
}

// Loads and reports like a compiler: warnings and the error on stderr, as they are (the rules file
// is the operator's, not attacker data). nullopt = the file is bad.
std::optional<rules::rule_set> validate(const rules_source& source, const rules::self_identity& self, console io) {
    try {
        rules::rule_set set = load_rules(source, self);
        for (const auto& warning : set.warnings()) io.err << warning_text(warning) << '\n';
        return set;
    } catch (const rules::rules_error& error) {
        io.err << error.what() << '\n';
        return std::nullopt;
    }
}

// ---- rules check ------------------------------------------------------------------------------

struct check_options {
    settings_options settings;
    std::string file;
};

int check_command(const check_options& options, console io) {
    const config::settings settings = load_settings(options.settings);
    const rules_source source = source_of(settings, options.file);
    const auto set = validate(source, net::identity_from_config(settings), io);
    if (!set) return exit_usage;
    io.out << source.name() << ": " << summary(*set) << " OK\n";
    return exit_ok;
}

// ---- selection shared by test and apply -------------------------------------------------------

struct selection_options {
    settings_options settings;
    std::string rules_file;
    std::string folder;
    std::string since;
    std::size_t limit = 0;
    CLI::Option* folder_flag = nullptr;
    CLI::Option* since_flag = nullptr;

    message_selection selection() const {
        message_selection chosen;
        if (folder_flag && folder_flag->count() != 0) chosen.folder = folder;  // normalised by the validator
        if (since_flag && since_flag->count() != 0) chosen.since = since;
        chosen.limit = limit;
        return chosen;
    }
};

void add_selection_options(CLI::App& command, selection_options& options) {
    add_settings_options(command, options.settings);
    options.folder_flag = command.add_option("--folder", options.folder, "only messages in this folder (inbox, Probes, ...)")
                              ->transform(folder_validator());
    options.since_flag = command.add_option("--since", options.since, "only messages received since (2026-11-23, 2026-11-23T18:00)")
                             ->transform(since_validator());
    command.add_option("--rules", options.rules_file, "rules file to use instead of the active one");
}

// The rule RULE names, checked to be one a stored message can be tested with.
const rules::rule& data_rule(const rules::rule_set& set, const std::string& name) {
    const rules::rule* rule = set.find(name);
    if (!rule) throw usage_failure("no rule named " + name + " in " + set.origin());
    if (rule->hook != rules::hook_point::data)
        throw usage_failure("rule " + name + " runs at the " + std::string(rules::to_string(rule->hook)) +
                            " hook: only data rules can be tested on stored messages");
    return *rule;
}

void render_matches(std::ostream& out, const std::vector<rule_match>& matches) {
    table view({{"ID", 12, true}, {"RECEIVED", 19}, {"CLIENT IP", 39}, {"FROM", 40}, {"SUBJECT", 60}, {"RULE", 40}});
    for (const auto& match : matches)
        view.add_row({std::to_string(match.message.id), short_time(match.message.received_at), match.message.peer_ip,
                      match.message.mail_from, match.message.headers.subject, match.rule->name});
    view.render(out);
}

std::string match_summary(const scan_result& result, const rules::rule* only) {
    std::string line = std::to_string(result.matches.size()) + " of " + plural(result.examined, "message") + " match " +
                       (only ? escape_for_terminal(only->name) : std::string("a rule"));
    if (result.missing != 0) line += " (" + std::to_string(result.missing) + " skipped: file gone)";
    return line;
}

// ---- rules test -------------------------------------------------------------------------------

struct test_options {
    selection_options select;
    std::string rule;
    bool json = false;
};

json::value to_json(const scan_result& result, const rules::rule* only) {
    json::array matches;
    for (const auto& match : result.matches) {
        const auto& m = match.message;
        matches.push_back(json::object{{"id", m.id},
                                       {"queue_id", json_safe(m.queue_id)},
                                       {"received_at", json_safe(m.received_at)},
                                       {"peer_ip", json_safe(m.peer_ip)},
                                       {"mail_from", json_safe(m.mail_from)},
                                       {"subject", json_safe(m.headers.subject)},
                                       {"folder", json_safe(m.folder)},
                                       {"rule", json_safe(match.rule->name)},
                                       {"kind", json_safe(match.rule->kind)}});
    }
    return json::object{{"rule", only ? json::value(json_safe(only->name)) : json::value(nullptr)},
                        {"examined", result.examined},
                        {"matched", result.matches.size()},
                        {"skipped", result.missing},
                        {"matches", std::move(matches)}};
}

int test_command(const test_options& options, console io) {
    const config::settings settings = load_settings(options.select.settings);
    auto db = open_store(settings.data_dir);
    const rules::rule_set set = load_rules(source_of(settings, options.select.rules_file), server_identity(settings));
    const rules::rule* only = options.rule.empty() ? nullptr : &data_rule(set, options.rule);
    const scan_result result = scan_messages(*db, settings.data_dir, options.select.selection(), set, only,
                                             settings.rules.max_scan_bytes);
    if (options.json) {
        print_json(io.out, to_json(result, only));
        return exit_ok;
    }
    if (!result.matches.empty()) render_matches(io.out, result.matches);
    io.out << match_summary(result, only) << '\n';
    return exit_ok;
}

// ---- rules apply ------------------------------------------------------------------------------

struct apply_options {
    selection_options select;
    std::string rule;
    bool yes = false;
};

struct apply_counts {
    std::size_t classified = 0, moved = 0, tagged = 0, dropped = 0, failed = 0;
};

// What the rule's actions do to a stored message, in words.
std::string planned_actions(const rules::actions& actions, const std::string& folder) {
    std::vector<std::string> steps;
    if (!actions.tags.empty()) steps.push_back("tag " + text::join(actions.tags, ", "));
    steps.push_back("record the rule and its kind");
    if (actions.drop) steps.push_back("drop the stored file (the row stays)");
    else if (actions.folder) steps.push_back("move to " + (folder.empty() ? std::string("the inbox") : folder));
    return text::join(steps, ", ");
}

apply_counts apply_actions(store::database& db, const fs::path& data_dir, const rules::rule& rule,
                           const std::optional<std::string>& folder, const std::vector<rule_match>& matches,
                           console io) {
    const rules::actions& actions = rule.actions;
    apply_counts counts;
    for (const auto& match : matches) {
        const auto& message = match.message;
        try {
            if (message.rule != rule.name || message.kind != rule.kind) {
                store::set_message_rule(db, message.id, rule.name, rule.kind);
                ++counts.classified;
            }
            std::vector<std::string> new_tags;
            for (const auto& tag : actions.tags)
                if (std::find(message.tags.begin(), message.tags.end(), tag) == message.tags.end() &&
                    std::find(new_tags.begin(), new_tags.end(), tag) == new_tags.end())
                    new_tags.push_back(tag);
            if (!new_tags.empty()) {
                store::add_message_tags(db, message.id, new_tags);
                ++counts.tagged;
            }
            if (actions.drop) {
                store::drop_message_file(db, data_dir, message.id);
                ++counts.dropped;
            } else if (folder && *folder != message.folder) {
                store::move_message(db, data_dir, message.id, *folder);
                ++counts.moved;
            }
        } catch (const std::exception& error) {
            ++counts.failed;
            io.err << "relaybait: message " << message.id << ": " << escape_for_terminal(error.what()) << '\n';
        }
    }
    return counts;
}

int apply_command(const apply_options& options, console io) {
    const config::settings settings = load_settings(options.select.settings);
    auto db = open_store(settings.data_dir, store::database::mode::read_write);
    const rules::rule_set set = load_rules(source_of(settings, options.select.rules_file), server_identity(settings));
    const rules::rule& rule = data_rule(set, options.rule);
    const rules::actions& actions = rule.actions;
    const std::optional<std::string> folder =
        actions.folder ? std::optional<std::string>(normalise_folder(*actions.folder)) : std::nullopt;
    const scan_result result = scan_messages(*db, settings.data_dir, options.select.selection(), set, &rule,
                                             settings.rules.max_scan_bytes);

    if (actions.relay)
        io.out << escape_for_terminal(rule.name) << ": relay is not applied to stored messages; relay one with `relaybait relay ID`\n";
    if (!result.matches.empty() && !options.yes) {
        render_matches(io.out, result.matches);
        io.out << match_summary(result, &rule) << '\n'
               << "would " << escape_for_terminal(planned_actions(actions, folder.value_or(""))) << '\n';
        if (!confirm(io, "Apply to " + plural(result.matches.size(), "message") + "?")) {
            io.err << "relaybait: not confirmed; nothing was changed\n";
            return exit_failure;
        }
    }
    const apply_counts counts = apply_actions(*db, settings.data_dir, rule, folder, result.matches, io);
    io.out << escape_for_terminal(rule.name) << ": " << result.matches.size() << " matching, " << counts.classified
           << " classified as " << escape_for_terminal(rule.kind) << ", " << counts.moved << " moved"
           << (folder ? " to " + (folder->empty() ? std::string("the inbox") : *folder) : std::string()) << ", "
           << counts.tagged << " tagged, " << counts.dropped << " dropped";
    if (counts.failed != 0) io.out << ", " << counts.failed << " failed";
    io.out << '\n';
    return counts.failed == 0 ? exit_ok : exit_failure;
}

// ---- rules reload -----------------------------------------------------------------------------

constexpr auto reload_wait = std::chrono::seconds(5);
constexpr auto reload_poll = std::chrono::milliseconds(100);

// DATA/rules-status.json, written by serve after every load of the rules.
struct rules_status {
    std::int64_t generation = 0;
    bool ok = false;
    std::string file, error, at;
    std::int64_t rules = 0, enabled = 0;
};

std::optional<rules_status> read_status(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    boost::system::error_code ec;
    const json::value document = json::parse(text.str(), ec);
    if (ec || !document.is_object()) return std::nullopt;  // being rewritten: read again later
    const json::object& object = document.as_object();
    const auto integer = [&](const char* key) -> std::int64_t {
        const json::value* value = object.if_contains(key);
        if (value && value->is_int64()) return value->as_int64();
        if (value && value->is_uint64()) return static_cast<std::int64_t>(value->as_uint64());
        return 0;
    };
    const auto text_of = [&](const char* key) -> std::string {
        const json::value* value = object.if_contains(key);
        return value && value->is_string() ? std::string(value->as_string()) : std::string();
    };
    const json::value* ok = object.if_contains("ok");
    if (!object.if_contains("generation")) return std::nullopt;
    return rules_status{integer("generation"), ok && ok->is_bool() && ok->as_bool(), text_of("file"),
                        text_of("error"), text_of("at"), integer("rules"), integer("enabled")};
}

// The server's pid from DATA/relaybait.pid, checked to be a live process.
pid_t server_pid(const fs::path& data_dir) {
    const fs::path file = data_dir / "relaybait.pid";
    std::ifstream in(file);
    long long pid = 0;
    if (!in || !(in >> pid)) throw command_failure("relaybait is not running (no " + file.string() + ")");
    // 0 and -1 would signal a process group or every process: never.
    if (pid <= 1 || pid > 0x3fffffff) throw command_failure("bad pid " + std::to_string(pid) + " in " + file.string());
    if (::kill(static_cast<pid_t>(pid), 0) != 0) {
        if (errno == ESRCH)
            throw command_failure("relaybait is not running (stale " + file.string() + ": no process " +
                                  std::to_string(pid) + ")");
        throw command_failure("cannot signal relaybait (pid " + std::to_string(pid) + "): " + std::strerror(errno));
    }
    return static_cast<pid_t>(pid);
}

int reload_command(const settings_options& options, console io) {
    const config::settings settings = load_settings(options);
    const rules_source source = source_of(settings, "");
    if (!validate(source, server_identity(settings), io)) {
        io.err << "relaybait: not reloaded; the running server keeps its rules\n";
        return exit_usage;
    }
    const pid_t pid = server_pid(settings.data_dir);
    const fs::path status_file = settings.data_dir / "rules-status.json";
    const auto before = read_status(status_file);
    if (::kill(pid, SIGHUP) != 0)
        throw command_failure("cannot signal relaybait (pid " + std::to_string(pid) + "): " + std::strerror(errno));
    const auto deadline = std::chrono::steady_clock::now() + reload_wait;
    std::optional<rules_status> after;
    for (;;) {
        after = read_status(status_file);
        // A restarted server counts generations from 1 again: the time tells those apart.
        if (after && (!before || after->generation != before->generation || after->at != before->at)) break;
        if (std::chrono::steady_clock::now() >= deadline)
            throw command_failure("relaybait (pid " + std::to_string(pid) + ") did not report a reload in " +
                                  status_file.string() + " within 5 s");
        std::this_thread::sleep_for(reload_poll);
    }
    const std::string file = after->file.empty() ? std::string(rules::default_rules_origin) : after->file;
    if (!after->ok) {
        io.err << "relaybait: reload refused, the previous rules stay active: " << after->error
               << '\n';
        return exit_usage;
    }
    io.out << "reloaded " << file << ": " << plural(static_cast<std::size_t>(std::max<std::int64_t>(after->rules, 0)), "rule")
           << " (" << after->enabled << " enabled), generation " << after->generation << '\n';
    return exit_ok;
}

}  // namespace

void add_rules_commands(CLI::App& app, command_runner& selected, console io) {
    auto* group = app.add_subcommand("rules", "check, try and apply the rules, reload them in the running server");
    group->require_subcommand(1);

    auto check = std::make_shared<check_options>();
    auto* check_cmd = group->add_subcommand("check", "validate a rules file (default: the active one) and print warnings");
    check_cmd->add_option("FILE", check->file, "rules file (default: rules.file of the configuration)");
    add_settings_options(*check_cmd, check->settings);
    check_cmd->callback([&selected, check, io] { selected = [check, io] { return check_command(*check, io); }; });

    auto test = std::make_shared<test_options>();
    auto* test_cmd = group->add_subcommand("test", "dry run: which stored messages a rule (or the rules) would match");
    test_cmd->add_option("RULE", test->rule, "evaluate only this rule, even when disabled");
    add_selection_options(*test_cmd, test->select);
    test_cmd->add_option("--limit", test->select.limit, "look at the newest N messages only")
        ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000}));
    test_cmd->add_flag("--json", test->json, "print one JSON document instead of a table");
    test_cmd->callback([&selected, test, io] { selected = [test, io] { return test_command(*test, io); }; });

    auto apply = std::make_shared<apply_options>();
    auto* apply_cmd = group->add_subcommand("apply", "apply a rule's folder, tags and drop to the stored messages it matches");
    apply_cmd->add_option("RULE", apply->rule, "the rule (enabled or not)")->required();
    add_selection_options(*apply_cmd, apply->select);
    apply_cmd->add_flag("--yes,-y", apply->yes, "do not ask for confirmation");
    apply_cmd->callback([&selected, apply, io] { selected = [apply, io] { return apply_command(*apply, io); }; });

    auto reload = std::make_shared<settings_options>();
    auto* reload_cmd = group->add_subcommand("reload", "validate the rules file, then make the running server reload it");
    add_settings_options(*reload_cmd, *reload);
    reload_cmd->callback([&selected, reload, io] { selected = [reload, io] { return reload_command(*reload, io); }; });
}

}  // namespace relaybait::cli
