#include "store/maildir.hpp"

#include "store/database.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace relaybait::store {
namespace fs = std::filesystem;

namespace {
[[noreturn]] void throw_errno(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
}

bool make_dir(const fs::path& p) {  // true when created now
    if (::mkdir(p.c_str(), 0750) == 0) return true;
    if (errno == EEXIST) return false;
    throw_errno("mkdir " + p.string());
}
}  // namespace

std::string maildir_host(std::string_view host) {
    if (host.empty()) return "localhost";
    std::string out;
    for (char c : host) {
        if (c == '/') out += "\\057";
        else if (c == ':') out += "\\072";
        else if (c == ',') out += "\\054";
        else out += c;
    }
    return out;
}

std::string maildir_unique_name(std::int64_t seconds, std::int64_t microseconds, std::int64_t pid,
                                std::uint64_t sequence, std::string_view host) {
    std::string name = std::to_string(seconds);
    name += ".M" + std::to_string(microseconds);
    name += "P" + std::to_string(pid);
    name += "Q" + std::to_string(sequence);
    name += '.';
    name += host;
    return name;
}

namespace {

void fsync_path(const fs::path& path, int open_flags) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | open_flags);
    if (fd < 0) throw_errno("open " + path.string());
    const int rc = ::fsync(fd);
    const int saved = errno;
    ::close(fd);
    if (rc != 0) {
        errno = saved;
        throw_errno("fsync " + path.string());
    }
}

}  // namespace

void fsync_directory(const fs::path& dir) { fsync_path(dir, O_DIRECTORY); }

void create_maildir_folder(const fs::path& root, std::string_view folder) {
    if (!valid_folder_name(folder)) throw std::system_error(EINVAL, std::generic_category(), "invalid Maildir++ folder");
    bool root_changed = false;
    if (root.has_parent_path() && make_dir(root)) fsync_directory(root.parent_path());
    const fs::path dir = folder.empty() ? root : root / std::string(folder);
    if (!folder.empty()) root_changed = make_dir(dir);
    bool dir_changed = false;
    for (const char* sub : {"cur", "new", "tmp"}) dir_changed |= make_dir(dir / sub);
    if (!folder.empty() && !fs::exists(dir / "maildirfolder")) {
        const int fd = ::open((dir / "maildirfolder").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) throw_errno("create " + (dir / "maildirfolder").string());
        ::close(fd);
        dir_changed = true;
    }
    if (dir_changed) fsync_directory(dir);
    if (root_changed) fsync_directory(root);
}

namespace {

// A name in `recovered` not taken yet: `label`, then label.1, label.2... The label is cut to
// 200 bytes (a folder name and a file name can pass NAME_MAX together). Throws when the
// directory cannot be examined, or after 10,000 tries, rather than loop.
fs::path free_name(const fs::path& recovered, std::string label) {
    if (label.size() > 200) label.resize(200);
    for (int i = 0; i <= 10'000; ++i) {
        const fs::path target = recovered / (i == 0 ? label : label + "." + std::to_string(i));
        std::error_code ec;
        const auto type = fs::symlink_status(target, ec).type();
        if (type == fs::file_type::not_found) return target;
        if (ec) throw fs::filesystem_error("cannot examine", target, ec);
    }
    throw fs::filesystem_error("no free name", recovered / label, std::make_error_code(std::errc::file_exists));
}

// DATA/maildir is a link to another disk, where rename cannot go: the file (or the link, as
// rename would move it) is copied under a temporary name, made durable, renamed into place
// and its directory synced; only then is the original removed. A failure at any step leaves
// the original and no copy.
void copy_across_filesystems(const fs::path& file, const fs::path& target) {
    const fs::path recovered = target.parent_path();
    const fs::path partial = recovered / (".partial." + target.filename().string());
    std::error_code ignored;
    try {
        fs::remove(partial, ignored);  // an earlier start's, cut by a crash
        if (fs::is_symlink(file)) {
            fs::copy_symlink(file, partial);
        } else {
            fs::copy_file(file, partial);
            fsync_path(partial, 0);
        }
        fs::rename(partial, target);
        fsync_directory(recovered);
    } catch (...) {
        fs::remove(partial, ignored);
        throw;
    }
    std::error_code removed;
    fs::remove(file, removed);
    if (removed) {
        fs::remove(target, ignored);  // "left in place" must be true: no second copy
        throw fs::filesystem_error("cannot remove after copying", file, removed);
    }
}

}  // namespace

fs::path move_to_recovered(const fs::path& data_dir, const fs::path& file, const std::string& label) {
    const fs::path recovered = data_dir / "maildir-recovered";
    fs::create_directories(recovered);
    const fs::path target = free_name(recovered, label);
    std::error_code moved;
    fs::rename(file, target, moved);
    if (moved == std::errc::cross_device_link)
        copy_across_filesystems(file, target);
    else if (moved)
        throw fs::filesystem_error("cannot move to " + recovered.string(), file, target, moved);
    return target;
}

namespace {

// The entries of `dir` of type `wanted` (symbolic links followed, as a directory listing
// would: DATA/maildir itself may be a link to another disk). An entry that cannot be examined
// (a symlink loop, a name the file system cannot stat) is skipped and logged: it must not
// stop the server from starting.
std::vector<fs::path> entries_of_type(const fs::path& dir, fs::file_type wanted) {
    std::vector<fs::path> found;
    std::error_code ec;
    const auto dir_type = fs::status(dir, ec).type();
    if (dir_type == fs::file_type::not_found) return found;
    if (ec || dir_type != fs::file_type::directory) {
        spdlog::warn("maildir recovery: skipped {} ({})", dir.string(), ec ? ec.message() : "not a directory");
        return found;
    }
    fs::directory_iterator it(dir, ec);
    for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
        std::error_code type_error;
        const auto type = it->status(type_error).type();
        if (type_error)
            spdlog::warn("maildir recovery: skipped {} ({})", it->path().string(), type_error.message());
        else if (type == wanted)
            found.push_back(it->path());
    }
    if (ec) spdlog::warn("maildir recovery: cannot list {}: {}", dir.string(), ec.message());
    return found;
}

}  // namespace

recovery_report recover_maildir(const fs::path& data_dir, database& db) {
    recovery_report report;
    const fs::path root = data_dir / "maildir";
    const fs::path recovered = data_dir / "maildir-recovered";
    if (!fs::exists(root)) return report;

    std::vector<std::string> folders{""};
    for (const auto& path : entries_of_type(root, fs::file_type::directory)) {
        const std::string name = path.filename().string();
        if (valid_folder_name(name) && name != "") folders.push_back(name);
    }
    bool moved_any = false;
    // A leftover that cannot be moved stays where it is (logged, tried again at the next
    // start): it must not keep the server from starting.
    const auto move_out = [&](const fs::path& file, const std::string& label) {
        try {
            move_to_recovered(data_dir, file, label);
        } catch (const std::exception& e) {
            spdlog::warn("maildir recovery: {} left in place: {}", file.string(), e.what());
            return false;
        }
        moved_any = true;
        return true;
    };
    const auto rel_new = [](const std::string& folder, const std::string& name) {
        return "maildir/" + (folder.empty() ? std::string() : folder + "/") + "new/" + name;
    };
    // A move_message interrupted between its rename and its UPDATE: the row still names the
    // file in another folder's new/, where it no longer is. Completes the move.
    const auto finish_move = [&](const std::string& folder, const std::string& name, const std::string& rel) {
        for (const auto& other : folders) {
            if (other == folder) continue;
            const std::string old_rel = rel_new(other, name);
            std::error_code ec;
            if (!db.has_maildir_path(old_rel) || fs::symlink_status(data_dir / old_rel, ec).type() != fs::file_type::not_found)
                continue;
            return db.relocate_maildir_path(old_rel, folder, rel);
        }
        return false;
    };
    for (const auto& folder : folders) {
        const fs::path dir = folder.empty() ? root : root / folder;
        const std::string label = folder.empty() ? "INBOX" : folder.substr(1);
        for (const auto& path : entries_of_type(dir / "tmp", fs::file_type::regular)) {
            if (move_out(path, label + "_tmp_" + path.filename().string())) ++report.tmp_files;
        }
        {
            bool changed = false;
            for (const auto& path : entries_of_type(dir / "new", fs::file_type::regular)) {
                const std::string name = path.filename().string();
                const std::string rel = rel_new(folder, name);
                if (db.has_maildir_path(rel)) continue;
                if (finish_move(folder, name, rel)) {
                    ++report.moves_completed;
                    continue;
                }
                if (!move_out(path, label + "_new_" + name)) continue;
                ++report.orphans;
                changed = true;
            }
            if (changed) fsync_directory(dir / "new");
        }
    }
    if (moved_any) fsync_directory(recovered);
    return report;
}

}  // namespace relaybait::store
