#pragma once
// What the read commands share: --data-dir, --json, the list filters, and opening the database.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>
#include <string>

#include "store/database.hpp"

namespace relaybait::cli {

struct read_options {
    std::filesystem::path data_dir = "relaybait-data";
    bool json = false;
};

struct list_options {
    read_options read;
    std::size_t limit = 50;
    std::string session_id;
    std::string peer_ip;
};

void add_read_options(CLI::App& command, read_options& options);
void add_list_options(CLI::App& command, list_options& options);
store::list_filter filter_of(const list_options& options);

// A message by database id, else by the Postfix-style queue id of its 250 reply;
// command_failure naming `id` when there is none.
store::message_record find_message(const store::database& db, const std::string& id);

// DATA/relaybait.db, read-only unless asked (read_write applies the store's migrations but never
// creates the file); command_failure when the directory or database is missing.
std::unique_ptr<store::database> open_store(const std::filesystem::path& data_dir,
                                            store::database::mode mode = store::database::mode::read_only);

}  // namespace relaybait::cli
