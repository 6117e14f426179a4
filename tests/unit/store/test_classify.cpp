// Classification at commit (ingest::commit with a classifier): folder moves, drops, failures,
// what the classifier sees, and that group commit and recovery stay right.
#include "store/database.hpp"
#include "store/ingest.hpp"
#include "store/maildir.hpp"
#include "ingest_test_support.hpp"
#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <iostream>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <thread>

using namespace relaybait::store;
using relaybait::test::commit_and_wait;
using relaybait::test::count_files;
using relaybait::test::read_file;
using relaybait::test::record_for;
using relaybait::test::temp_dir;
namespace fs = std::filesystem;

namespace {

const std::string trace =
    "Received: from evil (evil [198.51.100.7])\r\n\tby mx with ESMTP id ABC\r\nX-Relaybait-Session: 0123\r\n";

std::size_t count_files_everywhere(const fs::path& maildir) {
    std::size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(maildir))
        if (e.is_regular_file() && e.path().filename() != "maildirfolder") ++n;
    return n;
}

classifier always(classification c) {
    return classifier{.classify = [c](std::string_view, bool) { return c; }};
}

}  // namespace

TEST(Classify, MovesToProbesWithRuleKindAndTags) {
    temp_dir dir;
    ingest in({.data_dir = dir.path});
    auto m = in.begin_message("", trace);
    in.append(m, "Subject: probe\r\n\r\nhello");
    auto r = commit_and_wait(in, m, record_for("C1"),
                             always({.folder = "Probes", .tags = {"probe", "open-relay-test"}, .rule = "relay-probe",
                                     .kind = "probe"}));
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_TRUE(r.maildir_path.starts_with("maildir/.Probes/new/")) << r.maildir_path;
    EXPECT_EQ(r.classification.folder, ".Probes");
    EXPECT_EQ(r.classification.rule, "relay-probe");
    EXPECT_EQ(r.size, 23u);
    EXPECT_EQ(r.sha256.size(), 64u);
    EXPECT_EQ(read_file(dir.path / r.maildir_path), trace + "Subject: probe\r\n\r\nhello");
    EXPECT_TRUE(fs::is_regular_file(dir.path / "maildir/.Probes/maildirfolder"));
    EXPECT_EQ(count_files(dir.path / "maildir/new"), 0u);
    EXPECT_EQ(count_files(dir.path / "maildir/tmp"), 0u);
    EXPECT_EQ(count_files(dir.path / "maildir/.Probes/tmp"), 0u);

    database db(dir.path / "relaybait.db", database::mode::read_only);
    const auto row = db.find_message(r.message_id);
    ASSERT_TRUE(row);
    EXPECT_EQ(row->folder, ".Probes");
    EXPECT_EQ(row->maildir_path, r.maildir_path);
    EXPECT_EQ(row->rule, "relay-probe");
    EXPECT_EQ(row->kind, "probe");
    EXPECT_EQ(row->tags, (std::vector<std::string>{"probe", "open-relay-test"}));
    EXPECT_FALSE(row->dropped);
    EXPECT_EQ(row->sha256, r.sha256);
}

TEST(Classify, DropKeepsOnlyTheRow) {
    temp_dir dir;
    ingest in({.data_dir = dir.path});
    std::vector<std::int64_t> ids;
    for (int i = 0; i < 3; ++i) {  // several dropped rows: no clash on the (empty) path
        auto m = in.begin_message("", trace);
        in.append(m, std::string(100'000, 'x'));  // a file exists in tmp/ before the commit
        auto r = commit_and_wait(in, m, record_for("D" + std::to_string(i)),
                                 always({.folder = "Junk", .rule = "noise", .kind = "spam", .drop = true}));
        ASSERT_TRUE(r.ok) << r.error;
        EXPECT_EQ(r.maildir_path, "");
        EXPECT_TRUE(r.classification.drop);
        EXPECT_EQ(r.size, 100'000u);
        ids.push_back(r.message_id);
    }
    EXPECT_EQ(count_files_everywhere(dir.path / "maildir"), 0u);
    EXPECT_FALSE(fs::exists(dir.path / "maildir/.Junk"));  // no file, no folder
    database db(dir.path / "relaybait.db", database::mode::read_only);
    for (auto id : ids) {
        const auto row = db.find_message(id);
        ASSERT_TRUE(row);
        EXPECT_TRUE(row->dropped);
        EXPECT_EQ(row->maildir_path, "");
        EXPECT_EQ(row->kind, "spam");
        EXPECT_EQ(row->size, 100'000u);
    }
    EXPECT_EQ(in.committed(), 3u);
}

TEST(Classify, ThrowingClassifierFilesAsUnclassified) {
    temp_dir dir;
    ingest in({.data_dir = dir.path});
    auto m = in.begin_message(".Listener", trace);
    in.append(m, "Subject: x\r\n\r\n");
    classifier c{.classify = [](std::string_view, bool) -> classification { throw std::runtime_error("boom"); }};
    auto r = commit_and_wait(in, m, record_for("E1"), c);
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_TRUE(r.maildir_path.starts_with("maildir/.Listener/new/"));
    EXPECT_EQ(r.classification.rule, "");
    auto n = in.begin_message("", trace);
    classifier weird{.classify = [](std::string_view, bool) -> classification { throw 42; }};
    auto rn = commit_and_wait(in, n, record_for("E2"), weird);
    ASSERT_TRUE(rn.ok) << rn.error;
    EXPECT_TRUE(fs::is_regular_file(dir.path / rn.maildir_path));
    database db(dir.path / "relaybait.db", database::mode::read_only);
    EXPECT_EQ(db.find_message(r.message_id)->folder, ".Listener");
    EXPECT_EQ(db.find_message(r.message_id)->kind, "");
}

TEST(Classify, InvalidFolderKeepsTheOriginalButAppliesTheRest) {
    temp_dir dir;
    ingest in({.data_dir = dir.path});
    for (const std::string bad : {"../../etc", ".", "a/b", "Pro bes"}) {
        auto m = in.begin_message("", trace);
        auto r = commit_and_wait(in, m, record_for("B" + bad), always({.folder = bad, .rule = "r", .kind = "k"}));
        ASSERT_TRUE(r.ok) << r.error;
        EXPECT_TRUE(r.maildir_path.starts_with("maildir/new/")) << bad << " " << r.maildir_path;
        EXPECT_EQ(r.classification.folder, "");
        EXPECT_EQ(r.classification.kind, "k");
    }
    EXPECT_FALSE(fs::exists(dir.path / "etc"));
    // Already normalised, nested, and the folder begin_message was given: all fine.
    auto m = in.begin_message(".Probes", trace);
    auto r = commit_and_wait(in, m, record_for("N1"), always({.folder = ".Spam.Bulk"}));
    ASSERT_TRUE(r.ok);
    EXPECT_TRUE(r.maildir_path.starts_with("maildir/.Spam.Bulk/new/")) << r.maildir_path;
    EXPECT_EQ(count_files(dir.path / "maildir/.Probes/tmp"), 0u);
}

TEST(Classify, SeesExactlyTheMessageAndTheTruncationFlag) {
    temp_dir dir;
    ingest in({.data_dir = dir.path});
    std::string body = "Subject: big\r\n\r\n";
    for (int i = 0; body.size() < 300'000; ++i) body += "line " + std::to_string(i) + "\r\n";
    struct seen {
        std::string message;
        bool truncated = true;
    };
    const auto run = [&](const std::string& content, std::uint64_t max_bytes, const std::string& qid) {
        auto got = std::make_shared<seen>();
        auto m = in.begin_message("", trace);
        for (std::size_t at = 0; at < content.size(); at += 7000) in.append(m, content.substr(at, 7000));
        classifier c{.max_bytes = max_bytes, .classify = [got](std::string_view message, bool truncated) {
                         got->message = std::string(message);
                         got->truncated = truncated;
                         return classification{};
                     }};
        auto r = commit_and_wait(in, m, record_for(qid), c);
        EXPECT_TRUE(r.ok) << r.error;
        EXPECT_EQ(read_file(dir.path / r.maildir_path), trace + content);  // the file is untouched
        return *got;
    };
    // Large (read back from the file): whole, then cut.
    auto a = run(body, 4u << 20, "S1");
    EXPECT_EQ(a.message, body);
    EXPECT_FALSE(a.truncated);
    auto b = run(body, 100'000, "S2");
    EXPECT_EQ(b.message, body.substr(0, 100'000));
    EXPECT_TRUE(b.truncated);
    auto exact = run(body, body.size(), "S3");
    EXPECT_EQ(exact.message, body);
    EXPECT_FALSE(exact.truncated);
    // Small (kept in memory): whole, cut, empty.
    const std::string small = "Subject: s\r\n\r\nbody\r\n";
    auto c = run(small, 1000, "S4");
    EXPECT_EQ(c.message, small);
    EXPECT_FALSE(c.truncated);
    auto d = run(small, 5, "S5");
    EXPECT_EQ(d.message, "Subje");
    EXPECT_TRUE(d.truncated);
    auto e = run("", 1000, "S6");
    EXPECT_EQ(e.message, "");
    EXPECT_FALSE(e.truncated);
}

TEST(Classify, WithoutAClassifierNothingChanges) {
    temp_dir dir;
    ingest in({.data_dir = dir.path});
    auto m = in.begin_message(".Probes", trace);
    in.append(m, "Subject: s\r\n\r\n");
    message_record rec = record_for("U1");
    auto r = commit_and_wait(in, m, rec);
    ASSERT_TRUE(r.ok);
    EXPECT_TRUE(r.maildir_path.starts_with("maildir/.Probes/new/"));
    EXPECT_EQ(r.classification.folder, "");
    EXPECT_TRUE(r.classification.tags.empty());
    EXPECT_FALSE(r.classification.drop);
    EXPECT_EQ(r.size, 14u);
    EXPECT_EQ(r.sha256.size(), 64u);
    database db(dir.path / "relaybait.db", database::mode::read_only);
    const auto row = db.find_message(r.message_id);
    EXPECT_EQ(row->folder, ".Probes");
    EXPECT_EQ(row->rule, "");
    EXPECT_TRUE(row->tags.empty());
    EXPECT_FALSE(row->dropped);
}

// Concurrent commits, classified into several folders, kept or dropped, with both sync
// methods: every message lands where its classification says and batches still form.
TEST(Classify, ConcurrentMixedFoldersKeepGroupCommit) {
    for (const auto method : {sync_method::per_file, sync_method::syncfs}) {
        SCOPED_TRACE(method == sync_method::syncfs ? "syncfs" : "per_file");
        temp_dir dir;
        constexpr int threads = 8, per_thread = 60;
        std::atomic<int> failures{0};
        ingest_stats stats;
        {
            ingest in({.data_dir = dir.path, .sync = method});
            classifier c{.classify = [](std::string_view message, bool) {
                classification out;
                const auto n = message.substr(9, message.find('\r') - 9);  // "Subject: <n>"
                switch (std::stoi(std::string(n)) % 4) {
                    case 0: break;
                    case 1: out = {.folder = "Probes", .kind = "probe"}; break;
                    case 2: out = {.folder = "Spam.Bulk", .kind = "spam"}; break;
                    default: out = {.kind = "noise", .drop = true};
                }
                return out;
            }};
            std::vector<std::thread> workers;
            for (int t = 0; t < threads; ++t)
                workers.emplace_back([&, t] {
                    std::vector<std::future<commit_result>> pending;
                    for (int i = 0; i < per_thread; ++i) {
                        const int n = t * per_thread + i;
                        auto m = in.begin_message("", trace);
                        in.append(m, "Subject: " + std::to_string(n) + "\r\n\r\n" + std::string(3000, 'x'));
                        auto p = std::make_shared<std::promise<commit_result>>();
                        pending.push_back(p->get_future());
                        in.commit(m, record_for("M" + std::to_string(n)), [p](commit_result r) { p->set_value(r); }, c);
                    }
                    for (auto& f : pending)
                        if (!f.get().ok) ++failures;
                });
            for (auto& w : workers) w.join();
            stats = in.stats();
        }
        constexpr int total = threads * per_thread;
        EXPECT_EQ(failures.load(), 0);
        EXPECT_EQ(stats.committed, static_cast<std::uint64_t>(total));
        // per_file: the two writers fdatasync one file each at a time, so commits become ready
        // about two at a time (measured: 2.0-2.5 per batch); syncfs batches far more.
        if (method == sync_method::syncfs) EXPECT_LT(stats.batches, stats.committed / 2);
        else EXPECT_LT(stats.batches, stats.committed);
        EXPECT_EQ(count_files(dir.path / "maildir/new"), total / 4u);
        EXPECT_EQ(count_files(dir.path / "maildir/.Probes/new"), total / 4u);
        EXPECT_EQ(count_files(dir.path / "maildir/.Spam.Bulk/new"), total / 4u);
        for (const char* f : {"maildir/tmp", "maildir/.Probes/tmp", "maildir/.Spam.Bulk/tmp"})
            EXPECT_EQ(count_files(dir.path / f), 0u) << f;
        database db(dir.path / "relaybait.db", database::mode::read_only);
        const auto stats_db = db.message_stats(std::nullopt);
        EXPECT_EQ(stats_db.total, static_cast<std::uint64_t>(total));
        EXPECT_EQ(stats_db.dropped, total / 4u);
        for (const auto& row : db.list_messages({.limit = 10'000})) {
            if (row.dropped) {
                EXPECT_EQ(row.maildir_path, "");
                continue;
            }
            EXPECT_TRUE(fs::is_regular_file(dir.path / row.maildir_path)) << row.maildir_path;
            EXPECT_TRUE(row.maildir_path.starts_with("maildir/" + (row.folder.empty() ? "" : row.folder + "/") + "new/"));
        }
    }
}

// After a crash, recovery keeps every classified message (in its folder), and moves out only
// what has no row; dropped rows (no path) do not confuse it.
TEST(Classify, RecoveryWithFoldersAndDrops) {
    temp_dir dir;
    std::vector<std::string> kept;
    {
        ingest in({.data_dir = dir.path});
        for (int i = 0; i < 6; ++i) {
            auto m = in.begin_message("", trace);
            in.append(m, "Subject: r\r\n\r\n");
            classification c;
            if (i % 3 == 1) c = {.folder = "Probes", .kind = "probe"};
            if (i % 3 == 2) c = {.kind = "noise", .drop = true};
            auto r = commit_and_wait(in, m, record_for("R" + std::to_string(i)), always(c));
            ASSERT_TRUE(r.ok);
            if (!r.maildir_path.empty()) kept.push_back(r.maildir_path);
        }
    }
    ASSERT_EQ(kept.size(), 4u);
    // A crash mid-batch: renamed into the classifier's folder, never committed; a partial tmp
    // file in the folder the message began in.
    std::ofstream(dir.path / "maildir/.Probes/new/9.M9P9Q9.host,S=4") << "full";
    std::ofstream(dir.path / "maildir/tmp/8.M8P8Q8.host") << "half";
    {
        ingest in({.data_dir = dir.path});
        EXPECT_EQ(in.stats().recovered_orphans, 1u);
        EXPECT_EQ(in.stats().recovered_tmp, 1u);
    }
    for (const auto& p : kept) EXPECT_TRUE(fs::is_regular_file(dir.path / p)) << p;
    EXPECT_EQ(count_files(dir.path / "maildir/.Probes/new"), 2u);
    EXPECT_EQ(count_files(dir.path / "maildir/new"), 2u);
    EXPECT_EQ(count_files(dir.path / "maildir-recovered"), 2u);
    database db(dir.path / "relaybait.db", database::mode::read_only);
    EXPECT_EQ(db.count_messages(), 6u);
    EXPECT_EQ(db.message_stats(std::nullopt).dropped, 2u);
}

// The cost of classification on the write path: the same load with and without a classifier
// (every message classified: kind, tags, a third moved to .Probes, so the partial kind index is
// written for every row). Prints both rates; not a gate (the machine is shared).
TEST(Classify, ThroughputWithAndWithoutAClassifier) {
    for (const bool with : {false, true}) {
        temp_dir dir;
        constexpr int total = 2000, in_flight = 256;
        const std::string body = "Subject: load\r\n\r\n" + std::string(5000 - 17, 'x');
        std::mutex mutex;
        std::condition_variable cv;
        int outstanding = 0, done = 0, failures = 0;
        std::atomic<int> classified{0};
        classifier c;
        if (with)
            c.classify = [&classified](std::string_view message, bool) {
                const int n = classified++;
                classification out{.tags = {"bulk"}, .rule = "r", .kind = message.size() > 100 ? "spam" : "probe"};
                if (n % 3 == 0) out.folder = "Probes";
                return out;
            };
        ingest_stats stats;
        const auto start = std::chrono::steady_clock::now();
        {
            ingest in({.data_dir = dir.path});
            for (int i = 0; i < total; ++i) {
                {
                    std::unique_lock lock(mutex);
                    cv.wait(lock, [&] { return outstanding < in_flight; });
                    ++outstanding;
                }
                auto m = in.begin_message("", trace);
                in.append(m, body);
                in.commit(m, record_for("T" + std::to_string(i)), [&](commit_result r) {
                    std::lock_guard lock(mutex);
                    --outstanding, ++done;
                    if (!r.ok) ++failures;
                    cv.notify_all();
                }, c);
            }
            std::unique_lock lock(mutex);
            cv.wait(lock, [&] { return done == total; });
            stats = in.stats();
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        EXPECT_EQ(failures, 0);
        EXPECT_EQ(classified.load(), with ? total : 0);
        std::cout << "[ stats    ] " << (with ? "classified  " : "unclassified") << ": " << total << " x 5 KB in "
                  << seconds << " s = " << total / seconds << " msg/s; batches " << stats.batches << ", sqlite "
                  << stats.db_us / 1e6 << " s\n";
    }
}
