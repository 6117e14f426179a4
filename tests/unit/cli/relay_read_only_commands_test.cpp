// The inspection commands (`relay status`, `relays list`, `stats`) open the relay tables read
// only (relay_db::mode::read_only): they never create or migrate them, never write the file, so
// a newer CLI does not upgrade the schema under an older running server, and a read-only copy
// can be inspected. The commands that change state (`relay pause`) still open read-write.
// Tests may run as root, where permission bits do not apply: they check that the database file's
// bytes, its tables and its relay schema version are what they were before each command (the
// file is put in rollback-journal mode first, so that all of it is in that one file, and so that
// a read-write open, which switches it to WAL, would change its header).
#include <gtest/gtest.h>

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli_test_support.hpp"
#include "relay/relay_db.hpp"
#include "relay/safety.hpp"
#include "store/ingest.hpp"

namespace relaybait::cli {
namespace {

namespace fs = std::filesystem;
using testing::run;
using testing::temp_dir;

std::string file_bytes(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

// Runs statements on the file with a connection of the test's own.
void sql(const fs::path& file, const std::string& statements) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, statements.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << (error ? error : "") << " in: " << statements;
    sqlite3_free(error);
    sqlite3_close(db);
}

// The names in sqlite_master starting with relay_, and the relay schema version (-1: no table).
struct relay_schema {
    std::set<std::string> names;
    int version = -1;
    bool operator==(const relay_schema&) const = default;
};

relay_schema relay_schema_of(const fs::path& file) {
    relay_schema schema;
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE name LIKE 'relay%'", -1, &s, nullptr);
    while (sqlite3_step(s) == SQLITE_ROW) schema.names.insert(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
    sqlite3_finalize(s);
    if (schema.names.contains("relay_schema_migrations")) {
        sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM relay_schema_migrations", -1, &s, nullptr);
        if (sqlite3_step(s) == SQLITE_ROW) schema.version = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return schema;
}

class relay_read_only_commands : public ::testing::Test {
protected:
    void SetUp() override {
        data = dir.path() / "data";
        db_file = data / "relaybait.db";
        store::ingest ingest(store::ingest_options{.data_dir = data, .fsync = false});
        auto pending = ingest.begin_message("", "X-Relaybait-Session: cccccccccccccccc\r\n");
        ingest.append(pending, "Subject: probe\r\n\r\nbody\r\n");
        store::message_record record;
        record.session_id = "cccccccccccccccc";
        record.received_at = "2026-11-20T10:00:00.000000Z";
        record.peer_ip = "203.0.113.5";
        record.peer_port = 40000;
        record.listener = "smtp";
        record.mail_from = "one@spam.example";
        record.recipients = {"victim@example.net"};
        std::promise<store::commit_result> done;
        auto result = done.get_future();
        ingest.commit(pending, record, [&done](store::commit_result r) { done.set_value(std::move(r)); });
        ASSERT_TRUE(result.get().ok);
    }

    testing::result cli(std::vector<std::string> args) const {
        args.push_back("--data-dir");
        args.push_back(data.string());
        return run(args);
    }

    // The whole database in its one file (no WAL): what a read-write open would change.
    void to_rollback_journal() const {
        sql(db_file, "PRAGMA journal_mode=DELETE");
        ASSERT_FALSE(fs::exists(data / "relaybait.db-wal"));
    }

    static const std::vector<std::vector<std::string>>& inspection_commands() {
        static const std::vector<std::vector<std::string>> commands{
            {"relay", "status"},           {"relay", "status", "--json"},
            {"relays", "list"},            {"relays", "list", "--json"},
            {"relays", "list", "--refused"}, {"stats"},
            {"stats", "--json"},
        };
        return commands;
    }

    temp_dir dir;
    fs::path data, db_file;
};

TEST_F(relay_read_only_commands, a_database_without_relay_tables_reads_as_empty_and_stays_without_them) {
    to_rollback_journal();
    const std::string before = file_bytes(db_file);
    const relay_schema schema_before = relay_schema_of(db_file);
    ASSERT_TRUE(schema_before.names.empty());  // the store alone: the relay migrations never ran

    for (const auto& command : inspection_commands()) {
        const auto r = cli(command);
        EXPECT_EQ(r.code, 0) << command.front() << " " << command.at(1) << ": " << r.err;
        EXPECT_EQ(file_bytes(db_file), before) << command.front() << " " << command.at(1) << " changed the file";
        EXPECT_EQ(relay_schema_of(db_file), schema_before) << command.front() << " " << command.at(1);
    }
    const auto status = boost::json::parse(cli({"relay", "status", "--json"}).out);
    EXPECT_FALSE(status.at("paused").as_bool());
    EXPECT_EQ(status.at("today").to_number<std::uint64_t>(), 0u);
    EXPECT_EQ(status.at("queue").at("queued").to_number<std::uint64_t>(), 0u);
    EXPECT_EQ(status.at("caps_source").as_string(), "config");
    EXPECT_TRUE(boost::json::parse(cli({"relays", "list", "--json"}).out).as_array().empty());
    EXPECT_EQ(boost::json::parse(cli({"stats", "--json"}).out).at("messages").at("total").to_number<std::uint64_t>(), 1u);

    // A command that changes state still opens read-write: it creates the relay tables.
    ASSERT_EQ(cli({"relay", "pause"}).code, 0);
    EXPECT_EQ(relay_schema_of(db_file).version, relay::relay_db::latest_schema_version());
    EXPECT_TRUE(boost::json::parse(cli({"relay", "status", "--json"}).out).at("paused").as_bool());
}

TEST_F(relay_read_only_commands, the_current_schema_is_read_without_a_write) {
    {
        relay::safety booking(db_file, relay::relay_limits{});
        relay::relay_request request;
        request.message_id = "1";
        request.file = "maildir/new/x";
        request.sha256 = "booked";
        request.size = 10;
        request.mail_from = "one@spam.example";
        request.recipients = {"victim@example.net"};
        request.client_ip = "203.0.113.5";
        ASSERT_TRUE(booking.check_and_reserve(request).allowed);
    }
    ASSERT_EQ(cli({"relay", "pause"}).code, 0);
    to_rollback_journal();
    const std::string before = file_bytes(db_file);
    const relay_schema schema_before = relay_schema_of(db_file);
    ASSERT_EQ(schema_before.version, relay::relay_db::latest_schema_version());

    for (const auto& command : inspection_commands()) {
        const auto r = cli(command);
        EXPECT_EQ(r.code, 0) << command.front() << " " << command.at(1) << ": " << r.err;
        EXPECT_EQ(file_bytes(db_file), before) << command.front() << " " << command.at(1) << " changed the file";
    }
    EXPECT_EQ(relay_schema_of(db_file), schema_before);
    const auto status = boost::json::parse(cli({"relay", "status", "--json"}).out);
    EXPECT_TRUE(status.at("paused").as_bool());
    EXPECT_EQ(status.at("today").to_number<std::uint64_t>(), 1u);
    EXPECT_EQ(status.at("queue").at("queued").to_number<std::uint64_t>(), 1u);
    const auto queue = boost::json::parse(cli({"relays", "list", "--json"}).out).as_array();
    ASSERT_EQ(queue.size(), 1u);
    EXPECT_EQ(queue[0].at("recipient").as_string(), "victim@example.net");

    // Where permission bits apply (not as root): a read-only file in a read-only directory.
    if (::geteuid() == 0) return;
    fs::permissions(db_file, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
    fs::permissions(data, fs::perms::owner_read | fs::perms::owner_exec);
    for (const auto& command : inspection_commands()) {
        const auto r = cli(command);
        EXPECT_EQ(r.code, 0) << command.front() << " " << command.at(1) << " on a read-only copy: " << r.err;
    }
    fs::permissions(data, fs::perms::owner_all);
    fs::permissions(db_file, fs::perms::owner_read | fs::perms::owner_write);
}

// An older server's database: refused with a clear error, and left at its version.
TEST_F(relay_read_only_commands, an_older_relay_schema_is_refused_and_not_migrated) {
    { relay::relay_db migrate(db_file); }
    const int latest = relay::relay_db::latest_schema_version();
    ASSERT_EQ(latest, 5) << "downgrade below by the last migration's own objects";
    sql(db_file, "DROP TABLE relay_published_limits; DELETE FROM relay_schema_migrations WHERE version = 5");
    to_rollback_journal();
    const std::string before = file_bytes(db_file);
    const relay_schema schema_before = relay_schema_of(db_file);
    ASSERT_EQ(schema_before.version, 4);

    for (const auto& command : inspection_commands()) {
        const auto r = cli(command);
        EXPECT_EQ(r.code, 1) << command.front() << " " << command.at(1) << ": " << r.out;
        EXPECT_NE(r.err.find("relay schema version 4, this relaybait expects 5; start the server to migrate"),
                  std::string::npos)
            << r.err;
        EXPECT_EQ(file_bytes(db_file), before) << command.front() << " " << command.at(1) << " changed the file";
        EXPECT_EQ(relay_schema_of(db_file), schema_before) << command.front() << " " << command.at(1);
    }
}

TEST_F(relay_read_only_commands, a_newer_relay_schema_is_refused) {
    { relay::relay_db migrate(db_file); }
    sql(db_file, "INSERT INTO relay_schema_migrations(version, applied_at) VALUES(99, 'later')");
    const auto r = cli({"relay", "status"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("relay schema version 99 is newer than this relaybait"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace relaybait::cli
