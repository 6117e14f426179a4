#include "store/message_admin.hpp"

#include "store/maildir.hpp"

#include <stdio.h>  // renameat2, RENAME_NOREPLACE (glibc >= 2.28)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace relaybait::store {
namespace fs = std::filesystem;

namespace {

// Maildir name without its info part (":2,FLAGS") — what stays the same across new/ and cur/.
std::string base_name(const std::string& file_name) { return file_name.substr(0, file_name.find(':')); }

// `name` is the file of `base`: the same, or with an info suffix (":2,S"), or with Dovecot's
// extra ",W=<vsize>" field before it. The unique part of `base` ends with ",S=<size>", so a
// following ':' or ',' cannot be the start of another message's name.
bool same_message(std::string_view name, std::string_view base) {
    if (!name.starts_with(base)) return false;
    return name.size() == base.size() || name[base.size()] == ':' || name[base.size()] == ',';
}

// A regular file at `p`; absent also when something else is there (a directory) or a path
// component is not a directory. Any other failure to look is set in `error`.
bool is_file(const fs::path& p, std::error_code& error) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0) return S_ISREG(st.st_mode);
    if (errno != ENOENT && errno != ENOTDIR) error.assign(errno, std::generic_category());
    return false;
}

message_record require_message(const database& db, std::int64_t id) {
    auto m = db.find_message(id);
    if (!m) throw std::runtime_error("no message with id " + std::to_string(id));
    return std::move(*m);
}

void rename_no_replace(const fs::path& from, const fs::path& to) {
    int rc = ::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE);
    if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {  // filesystem without RENAME_NOREPLACE
        if (::access(to.c_str(), F_OK) == 0) errno = EEXIST;
        else rc = ::rename(from.c_str(), to.c_str());
    }
    if (rc != 0)
        throw std::runtime_error("cannot move " + from.string() + " to " + to.string() + ": " + std::strerror(errno));
}

std::runtime_error refused_path(std::int64_t message_id, const std::string& maildir_path) {
    return std::runtime_error("message " + std::to_string(message_id) + ": refusing its stored path \"" + maildir_path +
                              "\" (not a file inside the Maildir)");
}

}  // namespace

std::optional<fs::path> stored_message_path(const fs::path& data_dir, std::string_view maildir_path) {
    // Split on '/' by hand: std::filesystem would fold "a//b" and a trailing '/' away.
    std::vector<std::string_view> parts;
    for (std::size_t start = 0;;) {
        const std::size_t slash = maildir_path.find('/', start);
        parts.push_back(maildir_path.substr(start, slash == std::string_view::npos ? slash : slash - start));
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    if (parts.size() != 3 && parts.size() != 4) return std::nullopt;
    if (parts.front() != "maildir") return std::nullopt;
    if (parts.size() == 4 && (parts[1].empty() || !valid_folder_name(parts[1]))) return std::nullopt;
    const std::string_view sub = parts[parts.size() - 2];
    if (sub != "new" && sub != "cur") return std::nullopt;
    const std::string_view name = parts.back();
    if (name.empty() || name == "." || name == ".." || name.find('\0') != std::string_view::npos) return std::nullopt;
    return data_dir / fs::path(std::string(maildir_path));
}

std::optional<fs::path> locate_message_file(const fs::path& data_dir, const message_record& message) {
    std::error_code ignored;  // callers that act on the file: not found is all they can use
    return locate_message_file(data_dir, message, ignored);
}

std::optional<fs::path> locate_message_file(const fs::path& data_dir, const message_record& message,
                                            std::error_code& error) {
    error.clear();
    if (message.maildir_path.empty()) return std::nullopt;  // dropped
    const auto stored = stored_message_path(data_dir, message.maildir_path);
    if (!stored) {
        error = std::make_error_code(std::errc::invalid_argument);  // not looked at (see the header)
        return std::nullopt;
    }
    const fs::path& recorded = *stored;
    if (is_file(recorded, error)) return recorded;
    const fs::path folder_dir = recorded.parent_path().parent_path();
    const std::string base = base_name(recorded.filename().string());
    // Cheap guesses first (new/ as written, cur/ unread or seen), then a scan of cur/. Every
    // place is looked at even after a failed look: the file may be found in the next one.
    for (const fs::path& candidate : {folder_dir / "new" / base, folder_dir / "cur" / base,
                                      folder_dir / "cur" / (base + ":2,"), folder_dir / "cur" / (base + ":2,S")})
        if (is_file(candidate, error)) return error.clear(), candidate;
    std::error_code listing;
    fs::directory_iterator it(folder_dir / "cur", listing), end;
    const bool no_cur = listing == std::errc::no_such_file_or_directory || listing == std::errc::not_a_directory;
    for (; !listing && it != end; it.increment(listing)) {
        const std::string name = it->path().filename().string();
        if (same_message(name, base) && is_file(it->path(), error)) return error.clear(), it->path();
    }
    if (listing && !no_cur && !error) error = listing;  // cur/ could not be opened or read to its end
    return std::nullopt;
}

void move_message(database& db, const fs::path& data_dir, std::int64_t message_id, std::string_view folder_name) {
    const auto stored_folder = maildir_folder_for(folder_name);
    if (!stored_folder) throw std::runtime_error("invalid Maildir++ folder name: \"" + std::string(folder_name) + "\"");
    const std::string& folder = *stored_folder;
    const auto message = require_message(db, message_id);
    if (message.dropped) throw std::runtime_error("message " + std::to_string(message_id) + " was dropped: no file to move");
    if (!stored_message_path(data_dir, message.maildir_path)) throw refused_path(message_id, message.maildir_path);
    const auto source = locate_message_file(data_dir, message);
    if (!source)
        throw std::runtime_error("file of message " + std::to_string(message_id) + " not found (" +
                                 message.maildir_path + ")");
    const fs::path maildir = data_dir / "maildir";
    create_maildir_folder(maildir, folder);
    const std::string sub = source->parent_path().filename().string();  // new or cur
    const std::string name = source->filename().string();
    const std::string rel = "maildir/" + (folder.empty() ? std::string() : folder + "/") + sub + "/" + name;
    const fs::path target = data_dir / rel;
    if (target != *source) {
        // Rename first, then the row: a crash between the two leaves the file in the target
        // new/ under its unique name, which recovery (recover_maildir) matches to the row.
        rename_no_replace(*source, target);
        fsync_directory(target.parent_path());
        fsync_directory(source->parent_path());
    }
    if (!db.update_message_location(message_id, folder, rel))
        throw std::runtime_error("no message with id " + std::to_string(message_id));
}

void add_message_tags(database& db, std::int64_t message_id, const std::vector<std::string>& tags) {
    if (!db.add_message_tags(message_id, tags)) throw std::runtime_error("no message with id " + std::to_string(message_id));
}

void set_message_rule(database& db, std::int64_t message_id, const std::string& rule, const std::string& kind) {
    if (!db.set_message_rule(message_id, rule, kind)) throw std::runtime_error("no message with id " + std::to_string(message_id));
}

void drop_message_file(database& db, const fs::path& data_dir, std::int64_t message_id) {
    const auto message = require_message(db, message_id);
    if (!message.maildir_path.empty() && !stored_message_path(data_dir, message.maildir_path))
        throw refused_path(message_id, message.maildir_path);
    if (const auto file = locate_message_file(data_dir, message)) {
        // File first: a crash before the UPDATE leaves a row whose file is gone, and running
        // the drop again finishes it.
        if (::unlink(file->c_str()) != 0 && errno != ENOENT)
            throw std::runtime_error("cannot delete " + file->string() + ": " + std::strerror(errno));
        fsync_directory(file->parent_path());
    }
    db.mark_message_dropped(message_id);
}

}  // namespace relaybait::store
