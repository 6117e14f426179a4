// A row's maildir_path is untrusted: every file operation on a stored message (locate, read,
// drop, move, the start-up crash check) stays inside DATA/maildir whatever the row says.
#include "store/message_admin.hpp"

#include "store/database.hpp"
#include "store/ingest.hpp"
#include "ingest_test_support.hpp"
#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

using namespace relaybait::store;
using relaybait::test::commit_and_wait;
using relaybait::test::count_files;
using relaybait::test::read_file;
using relaybait::test::record_for;
using relaybait::test::temp_dir;
namespace fs = std::filesystem;

namespace {

// DATA inside a scratch directory, so that "outside DATA" is still inside the test's own tree.
struct layout {
    temp_dir root;
    fs::path data = root.path / "data";
    fs::path victim = root.path / "victim.txt";              // beside DATA
    fs::path secret = root.path / "data" / "secret,S=6";      // in DATA, outside DATA/maildir
    layout() {
        fs::create_directories(data);
        std::ofstream(victim) << "victim";
        std::ofstream(secret) << "secret";
    }
};

std::vector<std::int64_t> store_messages(const fs::path& data_dir, int count) {
    std::vector<std::int64_t> ids;
    ingest in({.data_dir = data_dir});
    for (int i = 0; i < count; ++i) {
        auto m = in.begin_message("", "Received: from evil\r\n");
        in.append(m, "Subject: " + std::to_string(i) + "\r\n\r\nbody");
        const auto result = commit_and_wait(in, m, record_for("5P" + std::to_string(i)));
        EXPECT_TRUE(result.ok) << result.error;
        ids.push_back(result.message_id);
    }
    return ids;
}

void set_path(const fs::path& data_dir, std::int64_t id, const std::string& maildir_path) {
    database db(data_dir / "relaybait.db", database::mode::read_write);
    ASSERT_TRUE(db.update_message_location(id, "", maildir_path));
}

// Stored paths that leave DATA/maildir, each aimed at a file that exists (victim or secret).
std::vector<std::string> escaping_paths(const layout& l) {
    return {"../victim.txt",                 // beside DATA
            "maildir/../../victim.txt",      // through maildir/
            "maildir/new/../../../victim.txt",
            l.victim.string(),               // absolute
            "secret,S=6",                    // inside DATA, not in the Maildir
            "maildir/../secret,S=6"};
}

}  // namespace

TEST(StoredMessagePath, OnlyTheShapesTheStoreWrites) {
    const fs::path data = "/srv/relaybait";
    EXPECT_EQ(stored_message_path(data, "maildir/new/1.M1P1Q1.host,S=10"), data / "maildir/new/1.M1P1Q1.host,S=10");
    EXPECT_EQ(stored_message_path(data, "maildir/cur/1.M1P1Q1.host,S=10:2,S"), data / "maildir/cur/1.M1P1Q1.host,S=10:2,S");
    EXPECT_EQ(stored_message_path(data, "maildir/.Probes/new/x"), data / "maildir/.Probes/new/x");
    EXPECT_EQ(stored_message_path(data, "maildir/.Spam.Bulk/cur/x"), data / "maildir/.Spam.Bulk/cur/x");
    for (const std::string bad :
         {"", "/etc/passwd", "../../x", "maildir/../../x", "maildir/new/../../x", "maildir/new/..", "maildir/new/.",
          "maildir/new/", "maildir//new/x", "maildir/new//x", "maildir/x", "maildir", "relaybait.db", "new/x",
          "./maildir/new/x", "maildir/tmp/x", "maildir/.Probes/tmp/x", "maildir/Probes/new/x", "maildir/../new/x",
          "maildir/.../new/x", "maildir/.a..b/new/x", "maildir/.Probes/new/x/y", "Maildir/new/x",
          "maildir/.Probes/.Spam/new/x"})
        EXPECT_FALSE(stored_message_path(data, bad)) << bad;
    EXPECT_FALSE(stored_message_path(data, std::string("maildir/new/x\0/../../../y", 25)));
    EXPECT_FALSE(stored_message_path(data, std::string("maildir/new/x\0y", 15)));  // c_str() would cut it
}

TEST(StoredMessagePath, LookupsRefuseAPathOutsideTheMaildir) {
    layout l;
    const auto ids = store_messages(l.data, 1);
    database db(l.data / "relaybait.db", database::mode::read_only);
    auto row = *db.find_message(ids[0]);
    for (const std::string& path : escaping_paths(l)) {
        row.maildir_path = path;
        EXPECT_FALSE(locate_message_file(l.data, row)) << path;
        std::error_code error;
        EXPECT_FALSE(locate_message_file(l.data, row, error)) << path;
        EXPECT_EQ(error, std::errc::invalid_argument) << path;  // "could not look", never "gone"
    }
}

TEST(StoredMessagePath, DropAndMoveTouchNothingOutsideTheMaildir) {
    layout l;
    const auto ids = store_messages(l.data, 1);
    for (const std::string& path : escaping_paths(l)) {
        set_path(l.data, ids[0], path);
        {
            database db(l.data / "relaybait.db", database::mode::read_write);
            EXPECT_THROW(drop_message_file(db, l.data, ids[0]), std::runtime_error) << path;
            EXPECT_THROW(move_message(db, l.data, ids[0], "Probes"), std::runtime_error) << path;
        }
        EXPECT_EQ(read_file(l.victim), "victim") << path;
        EXPECT_EQ(read_file(l.secret), "secret") << path;
        const auto row = database(l.data / "relaybait.db", database::mode::read_only).find_message(ids[0]);
        ASSERT_TRUE(row);
        EXPECT_FALSE(row->dropped) << path;
        EXPECT_EQ(row->maildir_path, path);  // the row is left as it was
        EXPECT_EQ(count_files(l.data / "maildir/.Probes/new"), 0u) << path;
        EXPECT_EQ(count_files(l.data / "maildir/.Probes/cur"), 0u) << path;
    }
}

// The start-up crash check (a row of the last minute whose file is not whole is removed and its
// file moved to maildir-recovered/) must neither take a row with an escaping path for a message
// lost in a crash nor move the file the path names: the row stays, the file stays.
TEST(StoredMessagePath, CrashCheckKeepsTheRowAndLeavesTheFileAlone) {
    layout l;
    const auto ids = store_messages(l.data, 3);
    // Each row's own file goes (else recover_maildir would move it out as a file without a row).
    for (const auto id : ids) {
        const auto row = database(l.data / "relaybait.db", database::mode::read_only).find_message(id);
        ASSERT_TRUE(row);
        fs::remove(l.data / row->maildir_path);
    }
    set_path(l.data, ids[0], "../victim.txt");           // names a file that exists, outside DATA
    set_path(l.data, ids[1], "maildir/../../missing");   // names nothing
    // ids[2] keeps its path: a file really lost in a crash, its row removed as usual.
    fs::remove(l.data / "relaybait.clean-stop");
    {
        ingest in({.data_dir = l.data, .hostname = "mx1.example.com"});
        EXPECT_EQ(in.stats().recovered_rows, 1u);
    }
    EXPECT_EQ(read_file(l.victim), "victim");
    EXPECT_EQ(count_files(l.data / "maildir-recovered"), 0u);
    database db(l.data / "relaybait.db", database::mode::read_only);
    EXPECT_TRUE(db.find_message(ids[0]));
    EXPECT_TRUE(db.find_message(ids[1]));
    EXPECT_FALSE(db.find_message(ids[2]));
}
