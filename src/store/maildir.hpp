#pragma once
// Maildir++ naming and layout (https://cr.yp.to/proto/maildir.html, Dovecot's maildir
// format): the root is the inbox (cur/ new/ tmp/); folders are ".Name" (nested ".A.B")
// subdirectories with their own cur/ new/ tmp/ and an empty `maildirfolder` file.
// Unique names: <seconds>.M<microseconds>P<pid>Q<sequence>.<host>, and in new/ the same
// with ",S=<file size>" (Maildir++ quota / Dovecot's physical size) appended.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/text.hpp"

namespace relaybait::store {

class database;

// The two folder-name functions are inline (string logic only) so that the rules parser can
// check a rule's folder with them: relaybait_rules does not link relaybait_store.

// "" (the inbox) or "." followed by one or more components of [A-Za-z0-9_-] joined by '.';
// at most 200 bytes. Anything else is refused (it would escape or confuse the Maildir).
inline bool valid_folder_name(std::string_view folder) {
    if (folder.empty()) return true;
    if (folder.size() > 200 || folder.front() != '.') return false;
    bool component_empty = true;
    for (const char c : folder.substr(1)) {
        if (c == '.') {
            if (component_empty) return false;
            component_empty = true;
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-') {
            component_empty = false;
        } else {
            return false;
        }
    }
    return !component_empty;
}

// The stored folder (valid_folder_name form) that a folder name written by a person means: a
// rule's `folder`, `--folder`, `relaybait rules apply`. The leading '.' is optional, and INBOX
// is the inbox as in IMAP (Dovecot):
//   ""  "INBOX"  "inbox"  ".INBOX" (any case)  -> ""         the inbox (the Maildir root)
//   "Probes"  ".Probes"                        -> ".Probes"
//   "Spam.Bulk"  ".Spam.Bulk"                  -> ".Spam.Bulk" (Bulk inside Spam)
// nullopt for anything else: ".", "..", "a..b", "a.", "../etc", "a/b", "a b", non-ASCII,
// over 200 bytes.
inline std::optional<std::string> maildir_folder_for(std::string_view name) {
    if (name.empty()) return std::string();
    const std::string_view bare = name.front() == '.' ? name.substr(1) : name;
    if (text::iequals(bare, "INBOX")) return std::string();
    std::string folder = "." + std::string(bare);
    if (!valid_folder_name(folder)) return std::nullopt;
    return folder;
}

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

// Moves `file` into DATA/maildir-recovered/ as `label` (".1", ".2"... appended while the name is
// taken). When DATA/maildir is on another file system (a link), the file is copied, the copy
// fsync'd, then the original removed. Throws std::filesystem::filesystem_error or
// std::runtime_error; the caller fsyncs the directories.
std::filesystem::path move_to_recovered(const std::filesystem::path& data_dir, const std::filesystem::path& file,
                                        const std::string& label);

// fsync of a directory (by path); throws std::system_error.
void fsync_directory(const std::filesystem::path& dir);

}  // namespace relaybait::store
