// `relaybait sessions list|show ID`.
#include <memory>

#include "cli/commands.hpp"
#include "cli/records_view.hpp"
#include "cli/store_access.hpp"

namespace relaybait::cli {
namespace {

struct show_options {
    read_options read;
    std::string id;
};

int list_command(const list_options& options, console io) {
    auto db = open_store(options.read.data_dir);
    const auto sessions = db->list_sessions(filter_of(options));
    if (options.read.json) print_json(io.out, to_json(sessions));
    else render_session_list(io.out, sessions);
    return exit_ok;
}

int show_command(const show_options& options, console io) {
    auto db = open_store(options.read.data_dir);
    const auto session = db->find_session(options.id);
    if (!session) throw command_failure("session " + options.id + " not found");
    if (options.read.json) print_json(io.out, to_json(*session));
    else render_session(io.out, *session);
    return exit_ok;
}

}  // namespace

void add_session_commands(CLI::App& app, command_runner& selected, console io) {
    auto* group = app.add_subcommand("sessions", "SMTP sessions: who connected and what they said");
    group->require_subcommand(1);

    auto list = std::make_shared<list_options>();
    auto* list_cmd = group->add_subcommand("list", "list sessions, newest first");
    add_list_options(*list_cmd, *list);
    list_cmd->callback([&selected, list, io] { selected = [list, io] { return list_command(*list, io); }; });

    auto show = std::make_shared<show_options>();
    auto* show_cmd = group->add_subcommand("show", "show one session with its timestamped transcript");
    show_cmd->add_option("ID", show->id, "session id")->required();
    add_read_options(*show_cmd, show->read);
    show_cmd->callback([&selected, show, io] { selected = [show, io] { return show_command(*show, io); }; });
}

}  // namespace relaybait::cli
