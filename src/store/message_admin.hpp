#pragma once
// Operator edits of stored messages (`relaybait rules apply`, later the web UI): move to a
// folder, add tags, delete the file keeping the row. Safe while `serve` runs: each edit is
// its own short transaction on a read_write database, and the file is renamed inside the
// Maildir (same filesystem: atomic), from new/ or cur/ (where Dovecot moves a message once an
// IMAP client saw it, with ":2,FLAGS" appended), keeping its unique name and flags.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <system_error>

#include "store/database.hpp"

namespace relaybait::store {

// data_dir/maildir_path when maildir_path names a file inside data_dir/maildir the way the store
// writes them: "maildir/" [FOLDER "/"] ("new" | "cur") "/" NAME, with FOLDER a valid_folder_name()
// (store/maildir.hpp) and NAME a plain file name (not "." or "..", no NUL byte). nullopt for any
// other stored path (absolute, with "..", outside maildir/, empty): a row is untrusted input, and
// every function below refuses such a row, so it cannot make a read, a delete or a move act
// outside the Maildir. Lexical only: symbolic links inside data_dir/maildir are not resolved.
std::optional<std::filesystem::path> stored_message_path(const std::filesystem::path& data_dir,
                                                         std::string_view maildir_path);

// The file of a stored message today: data_dir/maildir_path, or the same name in the sibling
// new/ or cur/ with any ":2,..." suffix. nullopt when it is gone (dropped, deleted, expunged over
// IMAP), and for a row whose maildir_path stored_message_path() refuses: nothing is looked at.
std::optional<std::filesystem::path> locate_message_file(const std::filesystem::path& data_dir,
                                                         const message_record& message);
// The same for a check that must tell "gone" from "could not look" (the start-up crash check):
// nullopt with `error` set when a lookup failed for another reason than "no such file" (a
// stat, opening cur/ or reading it: EIO, EACCES, ELOOP, EMFILE); the file may then exist.
// A refused maildir_path (see stored_message_path) sets `error` to EINVAL without looking at
// anything: such a row was not written by the store, so the crash check must not take it for a
// file lost in a crash (that would remove the row) nor act on the path: it keeps the row, warns.
std::optional<std::filesystem::path> locate_message_file(const std::filesystem::path& data_dir,
                                                         const message_record& message, std::error_code& error);

// Moves the message's file into the folder `folder_name` means (maildir_folder_for in
// store/maildir.hpp: "" or INBOX the inbox, "Probes" or ".Probes"; created if missing), same
// subdirectory (new/ or cur/), and updates folder + maildir_path. Throws std::runtime_error
// when the folder name is invalid, the stored path is refused (stored_message_path) or the file
// is missing.
void move_message(database& db, const std::filesystem::path& data_dir, std::int64_t message_id,
                  std::string_view folder_name);

// Adds tags not already present (order kept).
void add_message_tags(database& db, std::int64_t message_id, const std::vector<std::string>& tags);

// Records the rule that classified the message, and its kind (`relaybait rules apply`).
void set_message_rule(database& db, std::int64_t message_id, const std::string& rule, const std::string& kind);

// Deletes the file (if still there) and marks the row dropped (maildir_path empty); the
// metadata stays for statistics and threat intelligence. Throws std::runtime_error, changing
// nothing, when the stored path is refused (stored_message_path).
void drop_message_file(database& db, const std::filesystem::path& data_dir, std::int64_t message_id);

}  // namespace relaybait::store
