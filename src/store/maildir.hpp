#pragma once
// Maildir++ naming and layout (https://cr.yp.to/proto/maildir.html, Dovecot's maildir
// format): the root is the inbox (cur/ new/ tmp/); folders are ".Name" (nested ".A.B")
// subdirectories with their own cur/ new/ tmp/ and an empty `maildirfolder` file.
// Unique names: <seconds>.M<microseconds>P<pid>Q<sequence>.<host>, and in new/ the same
// with ",S=<file size>" (Maildir++ quota / Dovecot's physical size) appended.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace relaybait::store {

class database;

// "" (the inbox) or "." followed by one or more components of [A-Za-z0-9_-] joined by '.';
// at most 200 bytes. Anything else is refused (it would escape or confuse the Maildir).
bool valid_folder_name(std::string_view folder);

// The host part of a unique name: '/' -> "\057", ':' -> "\072", ',' -> "\054" (qmail, Dovecot);
// empty -> "localhost".
std::string maildir_host(std::string_view host);

std::string maildir_unique_name(std::int64_t seconds, std::int64_t microseconds, std::int64_t pid,
                                std::uint64_t sequence, std::string_view host);

// Creates the folder (cur/ new/ tmp/, maildirfolder) if missing and fsyncs the directories
// whose entries were added, so the folder survives a crash. Throws std::system_error.
void create_maildir_folder(const std::filesystem::path& maildir_root, std::string_view folder);

struct recovery_report {
    std::uint64_t tmp_files = 0;  // partial messages found in tmp/ (never acknowledged)
    std::uint64_t orphans = 0;    // files in new/ without a database row (never acknowledged)
    std::uint64_t moves_completed = 0;  // added: interrupted move_message, row updated to the file
};

// Start-up reconciliation of DATA/maildir against the database, before any new message:
// every file in a tmp/ and every file in a new/ whose path has no messages row is moved to
// DATA/maildir-recovered/ (kept for forensics, never counted). See ingest.hpp for why this
// is exactly the set of unacknowledged messages. cur/ is never touched (Dovecot's).
// Changed: takes the database writable. A file in new/ without a row whose name has a row in
// another folder's new/ where that file is missing is the trace of an interrupted
// move_message (store/message_admin.hpp: rename, then UPDATE): the row is pointed at the file
// (moves_completed) instead of moving the file out. Dropped rows have no path and no file.
recovery_report recover_maildir(const std::filesystem::path& data_dir, database& db);

// fsync of a directory (by path); throws std::system_error.
void fsync_directory(const std::filesystem::path& dir);

}  // namespace relaybait::store
