#include "relay/relay_db.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <string>

#include "relay/published_limits.hpp"

#include "test_support.hpp"

namespace relaybait::relay {
namespace {

// Reading relay_state under a held lock is relay_db's own business: only paused(held) needs it.
template <class db_type>
concept reads_state_under_a_held_lock =
    requires(db_type& db, const typename db_type::held_lock& held, const std::string& key) { db.state(held, key); };
static_assert(!reads_state_under_a_held_lock<relay_db>);

TEST(relay_db_state, a_missing_key_has_no_value) {
    relay_test::temp_dir dir;
    relay_db db(dir.path / "relaybait.db");
    EXPECT_FALSE(db.state("never-set").has_value());
}

TEST(relay_db_state, set_state_overwrites_the_value) {
    relay_test::temp_dir dir;
    relay_db db(dir.path / "relaybait.db");
    db.set_state("logs:2024-01-01", "a");
    db.set_state("logs:2024-01-01", "b");
    EXPECT_EQ(db.state("logs:2024-01-01"), "b");
}

TEST(relay_db_state, paused_reads_the_same_with_and_without_a_held_lock) {
    relay_test::temp_dir dir;
    relay_db db(dir.path / "relaybait.db");
    for (const bool paused : {false, true, false}) {
        if (paused != db.paused()) db.set_paused(paused);
        EXPECT_EQ(db.paused(), paused);
        const relay_db::held_lock held(db.mutex());
        EXPECT_EQ(db.paused(held), paused);
    }
    EXPECT_EQ(db.state("paused"), "0");  // stored as 0|1, which the CLI reads
}

// Read only (the inspection commands): never creates the file, never writes.
TEST(relay_db_read_only, a_missing_file_is_an_error_and_is_not_created) {
    relay_test::temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    EXPECT_THROW(relay_db(file, relay_db::mode::read_only), std::runtime_error);
    EXPECT_FALSE(std::filesystem::exists(file));
}

TEST(relay_db_read_only, its_writes_throw_and_its_reads_see_the_file) {
    relay_test::temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    {
        relay_db writer(file);
        writer.set_paused(true);
        writer.set_state("k", "v");
    }
    relay_db db(file, relay_db::mode::read_only);
    EXPECT_TRUE(db.read_only());
    EXPECT_TRUE(db.has_relay_tables());
    EXPECT_EQ(db.schema_version(), relay_db::latest_schema_version());
    EXPECT_TRUE(db.paused());
    EXPECT_EQ(db.state("k"), "v");
    EXPECT_THROW(db.set_paused(false), std::runtime_error);
    EXPECT_THROW(db.set_state("k", "w"), std::runtime_error);
    EXPECT_THROW(db.claim_due(std::chrono::system_clock::now(), std::chrono::seconds(60), 5), std::runtime_error);
    EXPECT_THROW(db.finish(1, "failed", 1, 0, "", "", std::chrono::system_clock::now()), std::runtime_error);
    EXPECT_THROW(db.insert_attempt(attempt_row{}), std::runtime_error);
    EXPECT_THROW(publish_limits(db, relay_limits{}, "sensor", 1), std::runtime_error);
    // Not even by hand through the handle (PRAGMA query_only, SQLITE_OPEN_READONLY).
    EXPECT_NE(sqlite3_exec(db.handle(), "DELETE FROM relay_state", nullptr, nullptr, nullptr), SQLITE_OK);
    EXPECT_EQ(db.state("k"), "v");
}

TEST(relay_db_read_only, without_relay_tables_it_reads_as_empty_and_writes_nothing) {
    relay_test::temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    {
        sqlite3* raw = nullptr;
        ASSERT_EQ(sqlite3_open(file.c_str(), &raw), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(raw, "CREATE TABLE other(x)", nullptr, nullptr, nullptr), SQLITE_OK);
        sqlite3_close(raw);
    }
    relay_db db(file, relay_db::mode::read_only);
    EXPECT_FALSE(db.has_relay_tables());
    EXPECT_EQ(db.schema_version(), 0);
    EXPECT_FALSE(db.paused());
    EXPECT_TRUE(db.list_queue().empty());
    EXPECT_TRUE(db.count_queue_by_state().empty());
    EXPECT_TRUE(db.list_decisions().empty());
    EXPECT_EQ(db.counter(utc_day(std::chrono::system_clock::now()), "daily", ""), 0u);
    EXPECT_FALSE(read_published_limits(db).has_value());
    EXPECT_THROW(db.set_paused(true), std::runtime_error);
    EXPECT_THROW(publish_limits(db, relay_limits{}, "sensor", 1), std::runtime_error);
    // The handle is the empty schema in memory, which has relay_state: only query_only refuses.
    EXPECT_NE(sqlite3_exec(db.handle(), "INSERT INTO relay_state VALUES('paused', '1')", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open_v2(file.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(raw, "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'relay%'", -1, &s, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    EXPECT_EQ(sqlite3_column_int(s, 0), 0);
    sqlite3_finalize(s);
    sqlite3_close(raw);
}

}  // namespace
}  // namespace relaybait::relay
