#include "cli/store_access.hpp"

#include "cli/commands.hpp"

namespace relaybait::cli {

void add_read_options(CLI::App& command, read_options& options) {
    command.add_option("--data-dir", options.data_dir, "relaybait's data directory")->capture_default_str();
    command.add_flag("--json", options.json, "print one JSON document instead of a table");
}

void add_list_options(CLI::App& command, list_options& options) {
    add_read_options(command, options.read);
    command.add_option("--limit", options.limit, "at most this many, newest first")
        ->check(CLI::Range(1, 1'000'000))
        ->capture_default_str();
    command.add_option("--session", options.session_id, "only this session's");
    command.add_option("--ip", options.peer_ip, "only from this client address");
}

store::list_filter filter_of(const list_options& options) {
    store::list_filter filter;
    filter.limit = options.limit;
    if (!options.session_id.empty()) filter.session_id = options.session_id;
    if (!options.peer_ip.empty()) filter.peer_ip = options.peer_ip;
    return filter;
}


store::message_record find_message(const store::database& db, const std::string& id) {
    const auto found = db.find_message_by_reference(id);
    if (!found) throw command_failure("message " + id + " not found (give a database id or a queue id)");
    return *found;
}

std::unique_ptr<store::database> open_store(const std::filesystem::path& data_dir, store::database::mode mode) {
    std::error_code ignored;
    if (!std::filesystem::is_directory(data_dir, ignored))
        throw command_failure("no data directory at " + data_dir.string() + " (give --data-dir)");
    const auto file = data_dir / "relaybait.db";
    if (!std::filesystem::exists(file, ignored))
        throw command_failure("no database at " + file.string() + " (has relaybait served from this directory?)");
    return std::make_unique<store::database>(file, mode);
}

}  // namespace relaybait::cli
