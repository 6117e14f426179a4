#include "relay/db_change_probe.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <fstream>

#include "../store/temp_dir.hpp"

namespace relaybait::relay {
namespace {

using namespace std::chrono_literals;
using clock = db_change_probe::clock;

void append(const std::filesystem::path& file, const std::string& bytes) {
    std::ofstream(file, std::ios::binary | std::ios::app) << bytes;
}

// Sets a file's modification time (an old write, as the probe sees it).
void set_modified(const std::filesystem::path& file, clock::time_point at) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
    const struct timespec times[2] = {{ns / 1'000'000'000, ns % 1'000'000'000}, {ns / 1'000'000'000, ns % 1'000'000'000}};
    ASSERT_EQ(::utimensat(AT_FDCWD, file.c_str(), times, 0), 0);
}

// relaybait.db in `dir`, last modified at `modified`.
std::filesystem::path database_written_at(const test::temp_dir& dir, clock::time_point modified) {
    const auto db = dir.path / "relaybait.db";
    append(db, "database");
    set_modified(db, modified);
    return db;
}

TEST(db_change_probe, sees_writes_to_the_database_and_its_wal_and_stays_quiet_otherwise) {
    test::temp_dir dir;
    const auto db = dir.path / "relaybait.db", wal = dir.path / "relaybait.db-wal";
    append(db, "database");
    const auto now = clock::now();
    const auto old = now - 1h;
    set_modified(db, old);
    db_change_probe probe(db, 2s);

    EXPECT_TRUE(probe.may_have_changed(now));        // the first look
    EXPECT_FALSE(probe.may_have_changed(now + 5s));  // nothing happened
    EXPECT_FALSE(probe.may_have_changed(now + 10s));

    append(wal, "frame");  // a WAL appears: another process wrote
    set_modified(wal, old);
    EXPECT_TRUE(probe.may_have_changed(now + 15s));
    EXPECT_FALSE(probe.may_have_changed(now + 20s));

    append(wal, "frame");  // the WAL grows, its time says nothing new
    set_modified(wal, old);
    EXPECT_TRUE(probe.may_have_changed(now + 25s));
    EXPECT_FALSE(probe.may_have_changed(now + 30s));

    set_modified(db, old + 1ms);  // a checkpoint rewrote pages in place: same size, new time
    EXPECT_TRUE(probe.may_have_changed(now + 35s));

    std::filesystem::remove(wal);  // the last connection closed and removed its WAL
    EXPECT_TRUE(probe.may_have_changed(now + 40s));
    EXPECT_FALSE(probe.may_have_changed(now + 45s));

    // A database replaced by another file (a restore): same size and time, another inode.
    const auto other = dir.path / "other.db";
    append(other, "database");
    set_modified(other, old + 1ms);
    std::filesystem::rename(other, db);
    EXPECT_TRUE(probe.may_have_changed(now + 50s));
}

TEST(db_change_probe, a_file_written_lately_may_change_again_within_its_timestamp) {
    test::temp_dir dir;
    const auto now = clock::now();
    const auto db = database_written_at(dir, now - 1s);
    db_change_probe probe(db, 2s);
    EXPECT_TRUE(probe.may_have_changed(now));
    EXPECT_TRUE(probe.may_have_changed(now + 500ms));   // unchanged, but written 1.5 s ago
    EXPECT_TRUE(probe.may_have_changed(now + 1500ms));  // written 1.5 s before the previous look
    EXPECT_FALSE(probe.may_have_changed(now + 3500ms));  // 2.5 s before the previous look
}

// Polls further apart than the window: a write seen just before a look may hide a second one
// in the same timestamp tick, after the look; the next look says "maybe" once more.
TEST(db_change_probe, a_look_right_after_a_write_is_not_trusted_whatever_the_polling_interval) {
    test::temp_dir dir;
    const auto now = clock::now();
    const auto db = database_written_at(dir, now - 1h);
    db_change_probe probe(db, 2s);
    EXPECT_TRUE(probe.may_have_changed(now));  // the first look
    set_modified(db, now + 4500ms);            // a write half a second before the next look
    EXPECT_TRUE(probe.may_have_changed(now + 5s));
    EXPECT_TRUE(probe.may_have_changed(now + 10s));   // nothing new shows, but it could hide
    EXPECT_FALSE(probe.may_have_changed(now + 15s));  // that look came long after the write
}

TEST(db_change_probe, an_idle_database_stays_quiet_for_hours) {
    test::temp_dir dir;
    const auto db = dir.path / "relaybait.db";
    append(db, "database");
    append(dir.path / "relaybait.db-wal", "frames");
    const auto now = clock::now();
    set_modified(db, now - 1h);
    set_modified(dir.path / "relaybait.db-wal", now - 1h);
    db_change_probe probe(db, 2s);
    EXPECT_TRUE(probe.may_have_changed(now));
    for (auto later = now + 5s; later < now + 6h; later += 5s) ASSERT_FALSE(probe.may_have_changed(later));
}

}  // namespace
}  // namespace relaybait::relay
