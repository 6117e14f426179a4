// `relaybait messages list|show ID [--raw [--force]]`.
#include <fstream>
#include <memory>

#include "cli/command_support.hpp"
#include "cli/commands.hpp"
#include "cli/records_view.hpp"
#include "cli/store_access.hpp"
#include "cli/table.hpp"
#include "store/message_admin.hpp"

namespace relaybait::cli {
namespace {

namespace fs = std::filesystem;

struct show_options {
    read_options read;
    std::string id;
    bool raw = false;
    bool force = false;  // --raw to a terminal anyway
};

// The stored file, found by the store's own lookup: a path that would leave DATA/maildir is
// refused there (store::stored_message_path), for this command as for every other caller. A
// mail client may have moved the file from new/ to cur/ (adding ":2,FLAGS"): found too.
fs::path message_file(const fs::path& data_dir, const store::message_record& message) {
    if (message.maildir_path.empty()) throw command_failure("message " + std::to_string(message.id) + " was dropped: no file");
    if (!store::stored_message_path(data_dir, message.maildir_path))
        throw command_failure("refusing message path " + escape_for_terminal(message.maildir_path));
    const auto file = store::locate_message_file(data_dir, message);
    if (!file)
        throw command_failure("file of message " + std::to_string(message.id) + " not found (" +
                              escape_for_terminal(message.maildir_path) + ")");
    return *file;
}

void copy_bytes(const fs::path& file, std::ostream& out) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw command_failure("cannot read " + file.string());
    char buffer[64 * 1024];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) out.write(buffer, in.gcount());
    if (in.bad()) throw command_failure("cannot read " + file.string());
    out.flush();
}

int list_command(const list_options& options, console io) {
    auto db = open_store(options.read.data_dir);
    const auto messages = db->list_messages(filter_of(options));
    if (options.read.json) print_json(io.out, to_json(messages));
    else render_message_list(io.out, messages);
    return exit_ok;
}

int show_command(const show_options& options, console io) {
    auto db = open_store(options.read.data_dir);
    const store::message_record message = find_message(*db, options.id);
    if (options.raw && io.out_is_terminal && !options.force)
        // The bytes are the attacker's: escape sequences would reach the terminal as they are.
        throw usage_failure("--raw writes the message byte for byte, escape sequences included: redirect it to a file "
                            "or pipe it (relaybait messages show " + escape_for_terminal(options.id) +
                            " --raw > message.eml), or add --force to write it to the terminal anyway");
    if (options.raw) copy_bytes(message_file(options.read.data_dir, message), io.out);
    else if (options.read.json) print_json(io.out, to_json(message));
    else render_message(io.out, message);
    return exit_ok;
}

}  // namespace

void add_message_commands(CLI::App& app, command_runner& selected, console io) {
    auto* group = app.add_subcommand("messages", "messages the honeypot accepted");
    group->require_subcommand(1);

    auto list = std::make_shared<list_options>();
    auto* list_cmd = group->add_subcommand("list", "list messages, newest first");
    add_list_options(*list_cmd, *list);
    list_cmd->callback([&selected, list, io] { selected = [list, io] { return list_command(*list, io); }; });

    auto show = std::make_shared<show_options>();
    auto* show_cmd = group->add_subcommand("show", "show one message's envelope and headers, or its bytes with --raw");
    show_cmd->add_option("ID", show->id, "message id or queue id")->required();
    add_read_options(*show_cmd, show->read);
    auto* raw = show_cmd->add_flag("--raw", show->raw,
                                   "print the stored message file byte for byte (to a file or a pipe; refused to a "
                                   "terminal unless --force)");
    raw->excludes("--json");
    show_cmd->add_flag("--force", show->force, "with --raw: write the bytes to a terminal anyway")->needs(raw);
    show_cmd->callback([&selected, show, io] { selected = [show, io] { return show_command(*show, io); }; });
}

}  // namespace relaybait::cli
