#include "store/message_admin.hpp"

#include "store/ingest.hpp"
#include "store/maildir.hpp"
#include "ingest_test_support.hpp"
#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <future>

using namespace relaybait::store;
using relaybait::test::count_files;
using relaybait::test::read_file;
using relaybait::test::temp_dir;
namespace fs = std::filesystem;

namespace {

const std::string trace = "Received: from evil (evil [198.51.100.7])\r\n\tby mx with ESMTP id ABC\r\n";

// Stores `count` messages through ingest (closed again), returns their ids.
std::vector<std::int64_t> store_messages(const fs::path& data_dir, int count, const std::string& folder = "") {
    std::vector<std::int64_t> ids;
    ingest in({.data_dir = data_dir});
    for (int i = 0; i < count; ++i) {
        auto m = in.begin_message(folder, trace);
        in.append(m, "Subject: " + std::to_string(i) + "\r\n\r\nbody");
        message_record r;
        r.queue_id = "A" + std::to_string(i) + folder;
        r.peer_ip = "198.51.100.7";
        std::promise<commit_result> p;
        in.commit(m, r, [&p](commit_result res) { p.set_value(std::move(res)); });
        auto res = p.get_future().get();
        EXPECT_TRUE(res.ok) << res.error;
        ids.push_back(res.message_id);
    }
    return ids;
}

}  // namespace

TEST(MessageAdmin, LocatesInNewAndInCurWithFlags) {
    temp_dir dir;
    const auto ids = store_messages(dir.path, 3);
    database db(dir.path / "relaybait.db", database::mode::read_write);
    const auto a = *db.find_message(ids[0]);
    EXPECT_EQ(locate_message_file(dir.path, a), dir.path / a.maildir_path);

    // Dovecot moved it to cur/ and added flags, then changed them.
    const auto b = *db.find_message(ids[1]);
    const fs::path b_new = dir.path / b.maildir_path;
    const fs::path b_cur = dir.path / "maildir/cur" / (b_new.filename().string() + ":2,RS");
    fs::rename(b_new, b_cur);
    EXPECT_EQ(locate_message_file(dir.path, b), b_cur);

    // Expunged over IMAP, and a dropped row: nothing.
    const auto c = *db.find_message(ids[2]);
    fs::remove(dir.path / c.maildir_path);
    EXPECT_FALSE(locate_message_file(dir.path, c));
    message_record dropped = c;
    dropped.maildir_path.clear();
    EXPECT_FALSE(locate_message_file(dir.path, dropped));
    // A name that only starts the same is not the message.
    std::ofstream(dir.path / "maildir/cur" / (fs::path(c.maildir_path).filename().string() + "0:2,S")) << "x";
    EXPECT_FALSE(locate_message_file(dir.path, c));
}

TEST(MessageAdmin, MovesFromNewAndFromCurKeepingNameAndFlags) {
    temp_dir dir;
    const auto ids = store_messages(dir.path, 2);
    database db(dir.path / "relaybait.db", database::mode::read_write);
    const auto a = *db.find_message(ids[0]);
    const std::string content = read_file(dir.path / a.maildir_path);
    move_message(db, dir.path, ids[0], "Probes");
    const auto moved = *db.find_message(ids[0]);
    EXPECT_EQ(moved.folder, ".Probes");
    EXPECT_EQ(moved.maildir_path, "maildir/.Probes/new/" + fs::path(a.maildir_path).filename().string());
    EXPECT_EQ(read_file(dir.path / moved.maildir_path), content);
    EXPECT_FALSE(fs::exists(dir.path / a.maildir_path));
    EXPECT_TRUE(fs::is_regular_file(dir.path / "maildir/.Probes/maildirfolder"));

    // From cur/ with flags: stays in cur/ of the target, flags kept; then back to the inbox.
    const auto b = *db.find_message(ids[1]);
    const std::string cur_name = fs::path(b.maildir_path).filename().string() + ":2,S";
    fs::rename(dir.path / b.maildir_path, dir.path / "maildir/cur" / cur_name);
    move_message(db, dir.path, ids[1], ".Spam.Bulk");
    auto row = *db.find_message(ids[1]);
    EXPECT_EQ(row.folder, ".Spam.Bulk");
    EXPECT_EQ(row.maildir_path, "maildir/.Spam.Bulk/cur/" + cur_name);
    EXPECT_TRUE(fs::is_regular_file(dir.path / row.maildir_path));
    EXPECT_EQ(locate_message_file(dir.path, row), dir.path / row.maildir_path);
    move_message(db, dir.path, ids[1], "INBOX");  // the inbox, as in IMAP (not a folder ".INBOX")
    row = *db.find_message(ids[1]);
    EXPECT_EQ(row.folder, "");
    EXPECT_EQ(row.maildir_path, "maildir/cur/" + cur_name);
    EXPECT_TRUE(fs::is_regular_file(dir.path / row.maildir_path));
    EXPECT_FALSE(fs::exists(dir.path / "maildir/.INBOX"));
    // Same folder again: nothing moves, nothing breaks.
    move_message(db, dir.path, ids[1], "");
    EXPECT_TRUE(fs::is_regular_file(dir.path / db.find_message(ids[1])->maildir_path));

    // The server still starts and keeps both (nothing counted as orphan).
    {
        ingest in({.data_dir = dir.path});
        EXPECT_EQ(in.stats().recovered_orphans, 0u);
    }
    EXPECT_TRUE(fs::is_regular_file(dir.path / db.find_message(ids[0])->maildir_path));
}

TEST(MessageAdmin, MoveRefusesBadFolderMissingFileAndUnknownId) {
    temp_dir dir;
    const auto ids = store_messages(dir.path, 2);
    database db(dir.path / "relaybait.db", database::mode::read_write);
    const auto before = *db.find_message(ids[0]);
    for (const std::string bad : {"../etc", ".", "a/b", "x y", ".."}) {
        EXPECT_THROW(move_message(db, dir.path, ids[0], bad), std::runtime_error) << bad;
    }
    EXPECT_EQ(db.find_message(ids[0])->maildir_path, before.maildir_path);
    EXPECT_TRUE(fs::is_regular_file(dir.path / before.maildir_path));
    EXPECT_FALSE(fs::exists(dir.path / "etc"));

    fs::remove(dir.path / db.find_message(ids[1])->maildir_path);
    EXPECT_THROW(move_message(db, dir.path, ids[1], "Probes"), std::runtime_error);
    EXPECT_EQ(db.find_message(ids[1])->folder, "");
    EXPECT_THROW(move_message(db, dir.path, 9999, "Probes"), std::runtime_error);
}

TEST(MessageAdmin, AddsTagsOnceInOrder) {
    temp_dir dir;
    const auto ids = store_messages(dir.path, 1);
    database db(dir.path / "relaybait.db", database::mode::read_write);
    add_message_tags(db, ids[0], {"b", "a"});
    add_message_tags(db, ids[0], {"a", "c", "c", "\xFFraw"});
    EXPECT_EQ(db.find_message(ids[0])->tags, (std::vector<std::string>{"b", "a", "c", "\xFFraw"}));
    add_message_tags(db, ids[0], {});
    EXPECT_EQ(db.find_message(ids[0])->tags.size(), 4u);
    EXPECT_THROW(add_message_tags(db, 9999, {"x"}), std::runtime_error);
    const std::vector<std::string> all{"b", "a", "c", "\xFFraw", "only"};
    EXPECT_EQ(db.add_message_tags(ids[0], {"only", "a"}), all);
    EXPECT_EQ(db.find_message(ids[0])->tags, all);
    EXPECT_EQ(db.add_message_tags(9999, {"x"}), std::nullopt);
}

TEST(MessageAdmin, DropDeletesTheFileKeepsTheRow) {
    temp_dir dir;
    const auto ids = store_messages(dir.path, 3, ".Probes");
    database db(dir.path / "relaybait.db", database::mode::read_write);
    const auto a = *db.find_message(ids[0]);
    drop_message_file(db, dir.path, ids[0]);
    auto row = *db.find_message(ids[0]);
    EXPECT_TRUE(row.dropped);
    EXPECT_EQ(row.maildir_path, "");
    EXPECT_EQ(row.sha256, a.sha256);
    EXPECT_FALSE(fs::exists(dir.path / a.maildir_path));

    // From cur/, and a file already gone: both end as dropped rows.
    const auto b = *db.find_message(ids[1]);
    fs::rename(dir.path / b.maildir_path,
               dir.path / "maildir/.Probes/cur" / (fs::path(b.maildir_path).filename().string() + ":2,S"));
    drop_message_file(db, dir.path, ids[1]);
    fs::remove(dir.path / db.find_message(ids[2])->maildir_path);
    drop_message_file(db, dir.path, ids[2]);
    drop_message_file(db, dir.path, ids[2]);  // again: nothing to do
    EXPECT_EQ(count_files(dir.path / "maildir/.Probes/new"), 0u);
    EXPECT_EQ(count_files(dir.path / "maildir/.Probes/cur"), 0u);
    EXPECT_EQ(db.message_stats(std::nullopt).dropped, 3u);
    EXPECT_THROW(drop_message_file(db, dir.path, 9999), std::runtime_error);
    EXPECT_THROW(move_message(db, dir.path, ids[0], "Probes"), std::runtime_error);
}

// A move interrupted between its rename and its UPDATE: the file sits in the target new/ and
// the row still names the old place. Recovery completes the move instead of pulling it out.
TEST(MessageAdmin, RecoveryCompletesAnInterruptedMove) {
    temp_dir dir;
    const auto ids = store_messages(dir.path, 1);
    std::string old_path;
    {
        database db(dir.path / "relaybait.db", database::mode::read_write);
        old_path = db.find_message(ids[0])->maildir_path;
    }
    create_maildir_folder(dir.path / "maildir", ".Probes");
    const std::string name = fs::path(old_path).filename().string();
    fs::rename(dir.path / old_path, dir.path / "maildir/.Probes/new" / name);
    {
        ingest in({.data_dir = dir.path});
        EXPECT_EQ(in.stats().recovered_orphans, 0u);
    }
    database db(dir.path / "relaybait.db", database::mode::read_only);
    const auto row = *db.find_message(ids[0]);
    EXPECT_EQ(row.folder, ".Probes");
    EXPECT_EQ(row.maildir_path, "maildir/.Probes/new/" + name);
    EXPECT_TRUE(fs::is_regular_file(dir.path / row.maildir_path));
}

TEST(MessageAdmin, EditsWhileTheServerRuns) {
    temp_dir dir;
    const auto ids = store_messages(dir.path, 1);
    ingest in({.data_dir = dir.path});  // holds its own read-write connection
    database db(dir.path / "relaybait.db", database::mode::read_write);
    move_message(db, dir.path, ids[0], "Probes");
    add_message_tags(db, ids[0], {"x"});
    auto m = in.begin_message("", trace);
    std::promise<commit_result> p;
    in.commit(m, message_record{.queue_id = "LIVE"}, [&p](commit_result r) { p.set_value(std::move(r)); });
    EXPECT_TRUE(p.get_future().get().ok);
    drop_message_file(db, dir.path, ids[0]);
    EXPECT_TRUE(db.find_message(ids[0])->dropped);
}
