#include "store/database.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <thread>

using namespace relaybait::store;
using relaybait::test::temp_dir;

namespace {

message_record sample_message(int i, const std::string& session = "s1") {
    message_record m;
    m.queue_id = "Q" + std::to_string(i);
    m.session_id = session;
    m.received_at = "2026-11-23T18:07:03.00000" + std::to_string(i % 10) + "Z";
    m.peer_ip = i % 2 ? "198.51.100.7" : "203.0.113.9";
    m.peer_port = 40000;
    m.listener = "smtp";
    m.helo_name = "evil";
    m.mail_from = "a@b";
    m.mail_parameters = "BODY=8BITMIME";
    m.recipients = {"x@Example.COM", "y@z", "nodomain"};
    m.folder = i % 3 ? "" : ".Probes";
    m.maildir_path = "maildir/new/" + std::to_string(i);
    m.size = 123;
    m.sha256 = std::string(64, 'a');
    m.headers.subject = "Subject \xFF\x00 with nul";
    m.headers.subject.push_back('\0');
    return m;
}

}  // namespace

TEST(Database, MigratesOnceAndReopens) {
    temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    {
        database db(file, database::mode::read_write);
        EXPECT_EQ(db.schema_version(), database::latest_schema_version());
    }
    {
        database db(file, database::mode::read_write);
        EXPECT_EQ(db.schema_version(), database::latest_schema_version());
        database ro(file, database::mode::read_only);
        EXPECT_EQ(ro.schema_version(), database::latest_schema_version());
    }
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(file.c_str(), &raw), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(raw, "SELECT COUNT(*) FROM schema_migrations", -1, &s, nullptr);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    EXPECT_EQ(sqlite3_column_int(s, 0), database::latest_schema_version());
    sqlite3_finalize(s);
    sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &s, nullptr);
    ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
    EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), "wal");
    sqlite3_finalize(s);
    sqlite3_close(raw);
}

TEST(Database, ErrorsNameTheFile) {
    temp_dir dir;
    try {
        database db(dir.path / "missing.db", database::mode::read_only);
        FAIL() << "opened a missing database";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("missing.db"), std::string::npos) << e.what();
    }
    database db(dir.path / "x.db", database::mode::read_write);
    db.begin();
    db.insert_message(sample_message(1));
    try {
        db.insert_message(sample_message(1));  // duplicate queue_id
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("x.db"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("UNIQUE"), std::string::npos) << e.what();
    }
    db.rollback();
    database ro(dir.path / "x.db", database::mode::read_only);
    EXPECT_THROW(ro.begin(), std::runtime_error);
}

TEST(Database, MessageRoundTripWithRecipientsAndHostileBytes) {
    temp_dir dir;
    database db(dir.path / "relaybait.db", database::mode::read_write);
    db.begin();
    const auto id = db.insert_message(sample_message(1));
    db.commit();
    const auto m = db.find_message(id);
    ASSERT_TRUE(m);
    const auto expected = sample_message(1);
    EXPECT_EQ(m->queue_id, expected.queue_id);
    EXPECT_EQ(m->headers.subject, expected.headers.subject);  // bytes, NUL included
    EXPECT_EQ(m->recipients, expected.recipients);
    EXPECT_EQ(m->peer_port, 40000);
    EXPECT_EQ(m->mail_parameters, "BODY=8BITMIME");
    EXPECT_EQ(m->sha256, expected.sha256);
    EXPECT_EQ(db.find_message_by_queue_id("Q1")->id, id);
    EXPECT_FALSE(db.find_message(id + 100));
    EXPECT_FALSE(db.find_message_by_queue_id("' OR 1=1 --"));
    EXPECT_TRUE(db.has_maildir_path("maildir/new/1"));
    EXPECT_FALSE(db.has_maildir_path("maildir/new/2"));
    // The session stub exists so the foreign key holds.
    ASSERT_TRUE(db.find_session("s1"));
    EXPECT_EQ(db.find_session("s1")->peer_ip, "198.51.100.7");
}

TEST(Database, ListsNewestFirstWithFilters) {
    temp_dir dir;
    database db(dir.path / "relaybait.db", database::mode::read_write);
    db.begin();
    for (int i = 1; i <= 30; ++i) db.insert_message(sample_message(i, i <= 10 ? "s1" : "s2"));
    db.commit();
    auto all = db.list_messages({.limit = 100});
    ASSERT_EQ(all.size(), 30u);
    EXPECT_EQ(all.front().queue_id, "Q30");
    EXPECT_EQ(all.back().queue_id, "Q1");
    auto page = db.list_messages({.limit = 5, .offset = 5});
    ASSERT_EQ(page.size(), 5u);
    EXPECT_EQ(page.front().queue_id, "Q25");
    EXPECT_EQ(db.list_messages({.limit = 100, .session_id = "s1"}).size(), 10u);
    EXPECT_EQ(db.list_messages({.limit = 100, .peer_ip = "198.51.100.7"}).size(), 15u);
    EXPECT_EQ(db.list_messages({.limit = 100, .folder = ".Probes"}).size(), 10u);
    EXPECT_EQ(db.list_messages({.limit = 100, .session_id = "s1", .peer_ip = "' OR ''='"}).size(), 0u);
    EXPECT_EQ(db.count_messages(), 30u);
}

TEST(Database, SessionsUpsertAndTranscriptsKeepExactBytes) {
    temp_dir dir;
    database db(dir.path / "relaybait.db", database::mode::read_write);
    session_record s;
    s.id = "0123456789abcdef";
    s.sensor = "sensor-1";
    s.listener = "smtp";
    s.peer_ip = "198.51.100.7";
    s.peer_port = 1234;
    s.started_at = "2026-11-23T18:07:03.000000Z";
    s.transcript = {{"2026-11-23T18:07:03.000001Z", 'S', "220 mx ESMTP Postfix"},
                    {"2026-11-23T18:07:03.000002Z", 'C', std::string("EHLO \xFF\xFE\x00\"]}", 11)},
                    {"2026-11-23T18:07:03.000003Z", 'C', "caf\xC3\xA9"}};
    db.begin();
    db.upsert_session(s);
    db.commit();
    s.ended_at = "2026-11-23T18:07:09.000000Z";
    s.outcome = "quit";
    s.commands = 7;
    s.transcript_truncated = true;
    db.begin();
    db.upsert_session(s);
    db.commit();
    const auto r = db.find_session(s.id);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->outcome, "quit");
    EXPECT_EQ(r->commands, 7u);
    EXPECT_TRUE(r->transcript_truncated);
    ASSERT_TRUE(r->ended_at);
    ASSERT_EQ(r->transcript.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(r->transcript[i].text, s.transcript[i].text) << i;
        EXPECT_EQ(r->transcript[i].direction, s.transcript[i].direction);
        EXPECT_EQ(r->transcript[i].at, s.transcript[i].at);
    }
    const auto listed = db.list_sessions({});
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_TRUE(listed[0].transcript.empty());
    EXPECT_EQ(db.count_sessions(), 1u);
}

TEST(Database, CredentialsRoundTrip) {
    temp_dir dir;
    database db(dir.path / "relaybait.db", database::mode::read_write);
    db.begin();
    for (int i = 0; i < 3; ++i) {
        credential_record c;
        c.session_id = "sess" + std::to_string(i % 2);
        c.peer_ip = "198.51.100.7";
        c.at = "2026-11-23T18:07:03.000000Z";
        c.listener = "submission";
        c.mechanism = "PLAIN";
        c.username = "admin'; DROP TABLE credentials; --";
        c.password = std::string("p\x00\xFFw", 4);
        c.raw = "AGFkbWluAHB3";
        c.accepted = i == 2;
        EXPECT_GT(db.insert_credential(c), 0);
    }
    db.commit();
    const auto all = db.list_credentials({});
    ASSERT_EQ(all.size(), 3u);
    EXPECT_TRUE(all[0].accepted);  // newest first
    EXPECT_EQ(all[0].password, std::string("p\x00\xFFw", 4));
    EXPECT_EQ(all[0].username, "admin'; DROP TABLE credentials; --");
    EXPECT_EQ(db.list_credentials({.session_id = "sess1"}).size(), 1u);
    EXPECT_EQ(db.count_credentials(), 3u);
}

TEST(Database, ReadersWorkWhileAWriterCommits) {
    temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    database writer(file, database::mode::read_write);
    std::atomic<bool> done{false};
    std::atomic<int> reads{0};
    std::atomic<bool> reader_failed{false};
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r)
        readers.emplace_back([&] {
            try {
                database ro(file, database::mode::read_only);
                std::size_t last = 0;
                while (!done) {
                    const auto n = ro.count_messages();
                    if (n < last) reader_failed = true;
                    last = n;
                    (void)ro.list_messages({.limit = 10});
                    ++reads;
                }
            } catch (const std::exception& e) {
                ADD_FAILURE() << e.what();
                reader_failed = true;
            }
        });
    for (int b = 0; b < 50; ++b) {
        writer.begin();
        for (int i = 0; i < 10; ++i) writer.insert_message(sample_message(b * 10 + i));
        writer.commit();
    }
    done = true;
    for (auto& t : readers) t.join();
    EXPECT_FALSE(reader_failed);
    EXPECT_GT(reads.load(), 0);
    EXPECT_EQ(writer.count_messages(), 500u);
}
