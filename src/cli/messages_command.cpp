// `relaybait messages list|show ID [--raw]`.
#include <fstream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/records_view.hpp"
#include "cli/store_access.hpp"

namespace relaybait::cli {
namespace {

namespace fs = std::filesystem;

struct show_options {
    read_options read;
    std::string id;
    bool raw = false;
};

// The stored file, refusing paths that leave the data directory. A mail client may have moved
// it from new/ to cur/ (adding ":2,FLAGS"), so cur/ is tried too.
fs::path message_file(const fs::path& data_dir, const std::string& relative) {
    const fs::path path(relative);
    for (const auto& part : path)
        if (part == "..") throw command_failure("refusing message path " + relative);
    if (relative.empty() || path.is_absolute()) throw command_failure("refusing message path " + relative);
    const fs::path file = data_dir / path;
    std::error_code ignored;
    if (fs::exists(file, ignored) || file.parent_path().filename() != "new") return file;
    const fs::path cur = file.parent_path().parent_path() / "cur";
    const std::string prefix = file.filename().string() + ":2,";
    for (const auto& entry : fs::directory_iterator(cur, ignored))
        if (entry.path().filename().string().rfind(prefix, 0) == 0) return entry.path();
    return file;
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
    if (options.raw) copy_bytes(message_file(options.read.data_dir, message.maildir_path), io.out);
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
    show_cmd->add_flag("--raw", show->raw, "print the stored message file byte for byte")->excludes("--json");
    show_cmd->callback([&selected, show, io] { selected = [show, io] { return show_command(*show, io); }; });
}

}  // namespace relaybait::cli
