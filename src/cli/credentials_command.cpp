// `relaybait credentials list`.
#include <memory>

#include "cli/commands.hpp"
#include "cli/records_view.hpp"
#include "cli/store_access.hpp"

namespace relaybait::cli {
namespace {

int list_command(const list_options& options, console io) {
    auto db = open_store(options.read.data_dir);
    const auto credentials = db->list_credentials(filter_of(options));
    if (options.read.json) print_json(io.out, to_json(credentials));
    else render_credential_list(io.out, credentials);
    return exit_ok;
}

}  // namespace

void add_credential_commands(CLI::App& app, command_runner& selected, console io) {
    auto* group = app.add_subcommand("credentials", "credentials clients tried with AUTH");
    group->require_subcommand(1);
    auto list = std::make_shared<list_options>();
    auto* list_cmd = group->add_subcommand("list", "list AUTH attempts, newest first");
    add_list_options(*list_cmd, *list);
    list_cmd->callback([&selected, list, io] { selected = [list, io] { return list_command(*list, io); }; });
}

}  // namespace relaybait::cli
