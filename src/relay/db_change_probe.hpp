#pragma once
// Whether a SQLite database may have changed since it was last looked at, from stat() of the
// database file and its WAL. The relay scheduler polls its queue every poll_interval; on an
// idle server that poll costs one system call per file instead of two queries, which would map
// back ~2 MB of SQLite code that a quiet server gave back (net/idle_memory.hpp). Any write by
// any connection or process (a CLI's `relay` or `relay pause`) appends to the WAL or, once
// checkpointed, writes the database file, so it changes a file's size, identity or time.
//
// Conservative: it says "maybe" when the signature (identity, size, modification time of both
// files) differs from the last call's, at the first call, and when a file's time was less than
// recent_write before this call or before the previous one: a second write within the
// timestamp tick of a write already seen leaves size (a WAL restarted in place) and time
// unchanged, so a time that close to a look is not trusted, once more at the next look
// whatever the polling interval. A false "maybe" only costs a poll. There is no periodic
// "maybe" for good measure: every idle minute would then map the SQLite code back in.
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

namespace relaybait::relay {

class db_change_probe {
public:
    using clock = std::chrono::system_clock;
    explicit db_change_probe(std::filesystem::path database, std::chrono::seconds recent_write = std::chrono::seconds(2));

    bool may_have_changed(clock::time_point now);

private:
    struct file_state {
        bool exists = false;
        unsigned long long device = 0, inode = 0;
        long long size = 0;
        long long modified_ns = 0;  // since the epoch
        bool operator==(const file_state&) const = default;
    };
    static file_state look_at(const std::string& file);

    std::string database_, wal_;
    std::chrono::seconds recent_write_;
    std::optional<std::pair<file_state, file_state>> last_;
    clock::time_point last_look_{};
};

}  // namespace relaybait::relay
