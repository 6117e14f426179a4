#include "relay/db_change_probe.hpp"

#include <sys/stat.h>

#include <algorithm>

namespace relaybait::relay {

db_change_probe::db_change_probe(std::filesystem::path database, std::chrono::seconds recent_write)
    : database_(database.string()), wal_(database.string() + "-wal"), recent_write_(recent_write) {}

db_change_probe::file_state db_change_probe::look_at(const std::string& file) {
    struct ::stat st {};
    if (::stat(file.c_str(), &st) != 0) return {};
    return file_state{true, static_cast<unsigned long long>(st.st_dev), static_cast<unsigned long long>(st.st_ino),
                      static_cast<long long>(st.st_size),
                      static_cast<long long>(st.st_mtim.tv_sec) * 1'000'000'000LL + st.st_mtim.tv_nsec};
}

bool db_change_probe::may_have_changed(clock::time_point now) {
    const auto seen = std::make_pair(look_at(database_), look_at(wal_));
    const auto ns = [](clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    };
    const long long recent_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(recent_write_).count();
    // Written less than recent_write before now, or before the previous look (then a write in
    // the same tick, after that look, would not show).
    const long long trusted_before_ns = std::min(ns(now), last_ ? ns(last_look_) : ns(now)) - recent_ns;
    const auto written_lately = [&](const file_state& f) { return f.exists && f.modified_ns > trusted_before_ns; };

    const bool maybe = !last_ || *last_ != seen || written_lately(seen.first) || written_lately(seen.second);
    last_ = seen;
    last_look_ = now;
    return maybe;
}

}  // namespace relaybait::relay
