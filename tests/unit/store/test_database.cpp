#include "store/database.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <random>
#include <string>
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

// The transcript JSON is written by hand (a word-at-a-time scan for bytes to escape): it must be
// byte-identical to boost::json::serialize of the same array of objects, for every escape at
// every offset of a word.
TEST(Database, TranscriptJsonIsByteIdenticalToBoostSerialize) {
    temp_dir dir;
    database db(dir.path / "relaybait.db", database::mode::read_write);
    std::mt19937 rng(7);
    const std::string pool = std::string("\"\\\x7F\t\r\n\b\f\x01\x1F aZ09~") + std::string(1, '\0') + "\xC3\xA9\xE2\x82\xAC";
    session_record s;
    s.id = "feedfacecafebeef";
    boost::json::array expected;
    for (int n = 0; n < 400; ++n) {
        std::string text;
        const int len = n < 40 ? n : static_cast<int>(rng() % 70);
        for (int i = 0; i < len; ++i) {
            const auto pick = rng() % 10;
            if (pick < 6) text += static_cast<char>('a' + rng() % 26);
            else if (pick < 9) text += pool[rng() % 15];  // ASCII escapes and plain bytes
            else text += "\xC3\xA9";                      // valid UTF-8, high bytes
        }
        s.transcript.push_back({"2026-11-23T18:07:03." + std::to_string(100000 + n) + "Z", n % 3 ? 'C' : 'S', text});
        boost::json::object o;
        o["at"] = s.transcript.back().at;
        o["dir"] = std::string(1, s.transcript.back().direction);
        o["text"] = text;
        expected.push_back(std::move(o));
    }
    db.upsert_session(s);
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open((dir.path / "relaybait.db").c_str(), &raw), SQLITE_OK);
    sqlite3_stmt* q = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(raw, "SELECT transcript FROM sessions WHERE id='feedfacecafebeef'", -1, &q, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    const std::string stored(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)),
                             static_cast<std::size_t>(sqlite3_column_bytes(q, 0)));
    sqlite3_finalize(q);
    sqlite3_close(raw);
    EXPECT_EQ(stored, boost::json::serialize(expected));
    const auto back = db.find_session(s.id);
    ASSERT_TRUE(back);
    ASSERT_EQ(back->transcript.size(), s.transcript.size());
    for (std::size_t i = 0; i < s.transcript.size(); ++i) EXPECT_EQ(back->transcript[i].text, s.transcript[i].text) << i;
}

// A message before its session: the stub row is completed by upsert_session (an UPDATE); the
// messages keep their session, and a session never seen is inserted.
TEST(Database, SessionStubCompletedKeepsItsMessages) {
    temp_dir dir;
    database db(dir.path / "relaybait.db", database::mode::read_write);
    db.begin();
    const auto first = db.insert_message(sample_message(1, "aaaaaaaaaaaaaaaa"));
    const auto second = db.insert_message(sample_message(2, "bbbbbbbbbbbbbbbb"));
    db.commit();
    ASSERT_EQ(db.count_sessions(), 2u);
    session_record a;
    a.id = "aaaaaaaaaaaaaaaa";
    a.listener = "smtp";
    a.peer_ip = "198.51.100.7";
    a.started_at = "2026-11-23T18:07:01.000000Z";
    a.ended_at = "2026-11-23T18:07:05.000000Z";
    a.transcript.assign(30, {"2026-11-23T18:07:02.000000Z", 'C', std::string(60, 'x')});
    a.outcome = "quit";
    a.messages = 1;
    db.begin();
    db.upsert_session(a);
    db.commit();
    session_record c = a;
    c.id = "cccccccccccccccc";
    c.started_at = "2026-11-23T18:07:00.000000Z";
    db.upsert_session(c);  // autocommit, no stub: inserted
    a.outcome = "timeout";
    db.upsert_session(a);  // again: updated
    EXPECT_EQ(db.count_sessions(), 3u);
    EXPECT_EQ(db.find_message(first)->session_id, "aaaaaaaaaaaaaaaa");
    EXPECT_EQ(db.find_message(second)->session_id, "bbbbbbbbbbbbbbbb");
    list_filter by_session;
    by_session.session_id = "aaaaaaaaaaaaaaaa";
    ASSERT_EQ(db.list_messages(by_session).size(), 1u);
    const auto r = db.find_session("aaaaaaaaaaaaaaaa");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->outcome, "timeout");
    EXPECT_EQ(r->started_at, "2026-11-23T18:07:01.000000Z");
    EXPECT_EQ(r->transcript.size(), 30u);
    const auto listed = db.list_sessions({});
    ASSERT_EQ(listed.size(), 3u);
    EXPECT_EQ(listed[0].id, "bbbbbbbbbbbbbbbb");  // stub: started_at = its message's received_at
    EXPECT_EQ(listed[1].id, "aaaaaaaaaaaaaaaa");
    EXPECT_EQ(listed[2].id, "cccccccccccccccc");
    list_filter by_peer;
    by_peer.peer_ip = "198.51.100.7";
    EXPECT_EQ(db.list_sessions(by_peer).size(), 2u);  // the stub of b has its message's peer
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

TEST(Database, ClassificationColumnsRoundTrip) {
    temp_dir dir;
    database db(dir.path / "relaybait.db", database::mode::read_write);
    auto m = sample_message(1);
    m.rule = "relay-probe";
    m.kind = "probe";
    m.tags = {"a", "quote\"d", "\xFF bytes"};
    m.relay_requested = true;
    auto d1 = sample_message(2), d2 = sample_message(3);
    d1.maildir_path.clear(), d2.maildir_path.clear();  // dropped rows have no path, several of them
    d1.dropped = d2.dropped = true;
    db.begin();
    const auto id = db.insert_message(m);
    const auto i1 = db.insert_message(d1);
    const auto i2 = db.insert_message(d2);
    db.commit();
    const auto r = db.find_message(id);
    EXPECT_EQ(r->rule, "relay-probe");
    EXPECT_EQ(r->kind, "probe");
    EXPECT_EQ(r->tags, m.tags);
    EXPECT_FALSE(r->dropped);
    EXPECT_TRUE(r->relay_requested);
    for (auto i : {i1, i2}) {
        EXPECT_TRUE(db.find_message(i)->dropped);
        EXPECT_FALSE(db.find_message(i)->relay_requested);
        EXPECT_EQ(db.find_message(i)->maildir_path, "");
        EXPECT_TRUE(db.find_message(i)->tags.empty());
    }
    EXPECT_FALSE(db.has_maildir_path(""));
    EXPECT_TRUE(db.update_message_location(id, ".Probes", "maildir/.Probes/new/1"));
    EXPECT_EQ(db.find_message(id)->maildir_path, "maildir/.Probes/new/1");
    EXPECT_FALSE(db.update_message_location(9999, "", "x"));
    EXPECT_TRUE(db.mark_message_dropped(id));
    EXPECT_TRUE(db.find_message(id)->dropped);
    EXPECT_EQ(db.find_message(id)->maildir_path, "");
    EXPECT_FALSE(db.mark_message_dropped(9999));
    database ro(dir.path / "relaybait.db", database::mode::read_only);
    EXPECT_THROW(ro.add_message_tags(id, {"x"}), std::runtime_error);
}

TEST(Database, ListFiltersSinceAndKind) {
    temp_dir dir;
    database db(dir.path / "relaybait.db", database::mode::read_write);
    db.begin();
    for (int i = 1; i <= 12; ++i) {
        auto m = sample_message(i);
        m.received_at = "2026-11-" + std::to_string(10 + i) + "T12:00:00.000000Z";
        m.kind = i % 3 == 0 ? "probe" : i % 3 == 1 ? "spam" : "";
        db.insert_message(m);
    }
    db.commit();
    EXPECT_EQ(db.list_messages({.limit = 100, .since = "2026-11-20"}).size(), 3u);  // 20, 21, 22
    EXPECT_EQ(db.list_messages({.limit = 100, .since = "2026-11-20T12:00:00.000000Z"}).size(), 3u);
    EXPECT_EQ(db.list_messages({.limit = 100, .since = "2026-11-20T12:00:01"}).size(), 2u);
    EXPECT_EQ(db.list_messages({.limit = 100, .since = "2027"}).size(), 0u);
    const auto probes = db.list_messages({.limit = 100, .kind = "probe"});
    ASSERT_EQ(probes.size(), 4u);
    EXPECT_EQ(probes.front().queue_id, "Q12");
    for (const auto& p : probes) EXPECT_EQ(p.kind, "probe");
    EXPECT_EQ(db.list_messages({.limit = 100, .kind = ""}).size(), 4u);  // unclassified
    EXPECT_EQ(db.list_messages({.limit = 100, .kind = "' OR 1=1 --"}).size(), 0u);
    EXPECT_EQ(db.list_messages({.limit = 100, .since = "2026-11-18", .kind = "spam"}).size(), 1u);  // 19
    EXPECT_EQ(db.list_messages({.limit = 100, .folder = ".Probes", .kind = "probe"}).size(), 4u);  // i % 3 == 0

    // The kind filter can use the partial index.
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open((dir.path / "relaybait.db").c_str(), &raw), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(raw, "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE kind=?1 AND kind<>'' ORDER BY id DESC",
                                 -1, &s, nullptr),
              SQLITE_OK);
    std::string plan;
    while (sqlite3_step(s) == SQLITE_ROW) plan += reinterpret_cast<const char*>(sqlite3_column_text(s, 3));
    EXPECT_NE(plan.find("messages_by_kind"), std::string::npos) << plan;
    sqlite3_finalize(s);
    sqlite3_close(raw);
}

TEST(Database, MessageStatistics) {
    temp_dir dir;
    database db(dir.path / "relaybait.db", database::mode::read_write);
    db.begin();
    for (int i = 1; i <= 12; ++i) {
        auto m = sample_message(i);
        m.received_at = "2026-11-" + std::to_string(10 + i) + "T12:00:00.000000Z";
        m.peer_ip = i <= 6 ? "198.51.100.1" : i <= 10 ? "198.51.100.2" : "198.51.100." + std::to_string(i);
        m.mail_from = i % 2 ? "a@b" : "";
        m.kind = i % 4 == 0 ? "probe" : "";
        if (i == 12) m.dropped = true, m.maildir_path.clear();
        db.insert_message(m);
    }
    db.commit();
    const auto all = db.message_stats(std::nullopt, 2);
    EXPECT_EQ(all.total, 12u);
    EXPECT_EQ(all.dropped, 1u);
    // i % 3 == 0 -> .Probes: 3, 6, 9 (12 dropped, not filed); the rest in the inbox.
    EXPECT_EQ(all.by_folder, (std::vector<std::pair<std::string, std::uint64_t>>{{"", 8}, {".Probes", 3}}));
    EXPECT_EQ(all.by_kind, (std::vector<std::pair<std::string, std::uint64_t>>{{"", 9}, {"probe", 3}}));
    EXPECT_EQ(all.top_client_ips,
              (std::vector<std::pair<std::string, std::uint64_t>>{{"198.51.100.1", 6}, {"198.51.100.2", 4}}));
    EXPECT_EQ(all.top_senders, (std::vector<std::pair<std::string, std::uint64_t>>{{"", 6}, {"a@b", 6}}));
    const auto recent = db.message_stats(std::string("2026-11-20"));
    EXPECT_EQ(recent.total, 3u);  // 10, 11, 12
    EXPECT_EQ(recent.dropped, 1u);
    EXPECT_EQ(recent.top_client_ips.size(), 3u);
    EXPECT_EQ(recent.by_kind, (std::vector<std::pair<std::string, std::uint64_t>>{{"", 2}, {"probe", 1}}));
    const auto none = db.message_stats(std::string("2030"));
    EXPECT_EQ(none.total, 0u);
    EXPECT_TRUE(none.by_folder.empty());
    database ro(dir.path / "relaybait.db", database::mode::read_only);
    EXPECT_EQ(ro.message_stats(std::nullopt).total, 12u);
}

// A database written by schema version 1 (messages.maildir_path NOT NULL UNIQUE, no
// classification): migrating keeps every row and its recipients (the table rebuild must not
// cascade) and the session links.
TEST(Database, MigratesAVersionOneDatabaseKeepingRows) {
    temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(file.c_str(), &raw), SQLITE_OK);
    const char* v1 = R"sql(
PRAGMA journal_mode=WAL;
PRAGMA foreign_keys=ON;
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
INSERT INTO schema_migrations VALUES(1, '2026-01-01T00:00:00Z');
CREATE TABLE sessions (id TEXT PRIMARY KEY NOT NULL, sensor TEXT NOT NULL DEFAULT '', listener TEXT NOT NULL DEFAULT '',
    peer_ip TEXT NOT NULL DEFAULT '', peer_port INTEGER NOT NULL DEFAULT 0, local_ip TEXT NOT NULL DEFAULT '',
    local_port INTEGER NOT NULL DEFAULT 0, started_at TEXT NOT NULL DEFAULT '', ended_at TEXT,
    helo_verb TEXT NOT NULL DEFAULT '', helo_name TEXT NOT NULL DEFAULT '', tls_version TEXT NOT NULL DEFAULT '',
    tls_cipher TEXT NOT NULL DEFAULT '', transcript TEXT NOT NULL DEFAULT '[]', transcript_truncated INTEGER NOT NULL DEFAULT 0,
    bytes_in INTEGER NOT NULL DEFAULT 0, bytes_out INTEGER NOT NULL DEFAULT 0, commands INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0, messages INTEGER NOT NULL DEFAULT 0, outcome TEXT NOT NULL DEFAULT '');
CREATE TABLE messages (id INTEGER PRIMARY KEY, queue_id TEXT NOT NULL UNIQUE,
    session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL, received_at TEXT NOT NULL,
    peer_ip TEXT NOT NULL DEFAULT '', peer_port INTEGER NOT NULL DEFAULT 0, listener TEXT NOT NULL DEFAULT '',
    helo_name TEXT NOT NULL DEFAULT '', mail_from TEXT NOT NULL DEFAULT '', mail_parameters TEXT NOT NULL DEFAULT '',
    auth_username TEXT NOT NULL DEFAULT '', tls_version TEXT NOT NULL DEFAULT '', tls_cipher TEXT NOT NULL DEFAULT '',
    via_bdat INTEGER NOT NULL DEFAULT 0, folder TEXT NOT NULL DEFAULT '', maildir_path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL DEFAULT 0, sha256 TEXT NOT NULL DEFAULT '', header_subject TEXT NOT NULL DEFAULT '',
    header_from TEXT NOT NULL DEFAULT '', header_to TEXT NOT NULL DEFAULT '', header_date TEXT NOT NULL DEFAULT '',
    header_message_id TEXT NOT NULL DEFAULT '', header_x_mailer TEXT NOT NULL DEFAULT '',
    header_user_agent TEXT NOT NULL DEFAULT '');
CREATE INDEX messages_by_session ON messages(session_id);
CREATE INDEX messages_by_peer ON messages(peer_ip, id DESC);
CREATE INDEX messages_by_sha256 ON messages(sha256);
CREATE INDEX messages_by_folder ON messages(folder, id DESC);
CREATE INDEX messages_by_received ON messages(received_at DESC);
CREATE TABLE recipients (message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, address TEXT NOT NULL, local_part TEXT NOT NULL, domain TEXT NOT NULL,
    PRIMARY KEY (message_id, position)) WITHOUT ROWID;
CREATE INDEX recipients_by_domain ON recipients(domain);
CREATE INDEX recipients_by_address ON recipients(address);
CREATE TABLE credentials (id INTEGER PRIMARY KEY, session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL,
    peer_ip TEXT NOT NULL DEFAULT '', at TEXT NOT NULL DEFAULT '', listener TEXT NOT NULL DEFAULT '',
    mechanism TEXT NOT NULL DEFAULT '', authzid TEXT NOT NULL DEFAULT '', username TEXT NOT NULL DEFAULT '',
    password TEXT NOT NULL DEFAULT '', challenge TEXT NOT NULL DEFAULT '', raw TEXT NOT NULL DEFAULT '',
    accepted INTEGER NOT NULL DEFAULT 0);
INSERT INTO sessions(id, peer_ip) VALUES('s1', '198.51.100.7');
INSERT INTO messages(id, queue_id, session_id, received_at, folder, maildir_path, header_subject)
    VALUES(7, 'OLD1', 's1', '2026-01-01T00:00:00.000000Z', '.Probes', 'maildir/.Probes/new/x', 'old');
INSERT INTO recipients VALUES(7, 0, 'v@example.com', 'v', 'example.com');
INSERT INTO recipients VALUES(7, 1, 'w@example.com', 'w', 'example.com');
)sql";
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(raw, v1, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_close(raw);

    EXPECT_THROW(database(file, database::mode::read_only), std::runtime_error);  // too old to read
    {
        database db(file, database::mode::read_write);
        EXPECT_EQ(db.schema_version(), database::latest_schema_version());
        const auto m = db.find_message(7);
        ASSERT_TRUE(m);
        EXPECT_EQ(m->queue_id, "OLD1");
        EXPECT_EQ(m->session_id, "s1");
        EXPECT_EQ(m->maildir_path, "maildir/.Probes/new/x");
        EXPECT_EQ(m->recipients, (std::vector<std::string>{"v@example.com", "w@example.com"}));
        EXPECT_EQ(m->kind, "");
        EXPECT_TRUE(m->tags.empty());
        EXPECT_FALSE(m->dropped);
        EXPECT_FALSE(m->relay_requested);  // rows from before version 3: no relay at the next start
        EXPECT_TRUE(db.has_maildir_path("maildir/.Probes/new/x"));
        // New rows after the migration, and foreign keys are on again.
        db.begin();
        auto n = sample_message(8);
        n.kind = "probe";
        const auto id = db.insert_message(n);
        db.commit();
        EXPECT_GT(id, 7);
        sqlite3* check = nullptr;
        ASSERT_EQ(sqlite3_open(file.c_str(), &check), SQLITE_OK);
        sqlite3_stmt* s = nullptr;
        ASSERT_EQ(sqlite3_prepare_v2(check, "PRAGMA foreign_key_check", -1, &s, nullptr), SQLITE_OK);
        EXPECT_EQ(sqlite3_step(s), SQLITE_DONE);  // no violation
        sqlite3_finalize(s);
        ASSERT_EQ(sqlite3_prepare_v2(check, "SELECT COUNT(*) FROM sqlite_master WHERE type='index' AND tbl_name='messages' "
                                            "AND name LIKE 'messages_by_%'", -1, &s, nullptr),
                  SQLITE_OK);
        ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
        EXPECT_EQ(sqlite3_column_int(s, 0), 6);
        sqlite3_finalize(s);
        sqlite3_close(check);
    }
}

namespace {

// KiB of SQLite's heap a new connection takes to open `file` and read from it.
std::int64_t heap_kib_of_one_reader(const std::filesystem::path& file) {
    const auto before = sqlite3_memory_used();
    database reader(file, database::mode::read_only);
    reader.count_messages();
    return (sqlite3_memory_used() - before) / 1024;
}

void create_database(const std::filesystem::path& file) { database created(file, database::mode::read_write); }

}  // namespace

// Set up before SQLite's first use (as serve() does), a connection allocates its cache pages
// as it reads instead of a bulk block of 20 at its first read; set up later, SQLite refuses
// the change: reported (false), harmless, the connections keep working. Later calls answer
// what the first did without asking SQLite again (which would now refuse).
TEST(ConfigureSqliteForServer, SavesTheBulkCacheOnlyWhenCalledBeforeSqliteIsUsed) {
    // A child that re-runs only this test: SQLite is not initialised there yet. Everything
    // before EXPECT_EXIT runs in the child too, so nothing here may touch SQLite.
    struct restore_style {
        std::string saved = GTEST_FLAG_GET(death_test_style);
        ~restore_style() { GTEST_FLAG_SET(death_test_style, saved); }
    } restore;
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    constexpr int refused = 255, asked_again = 254;
    std::int64_t configured_kib = -1;
    EXPECT_EXIT(
        {
            int code = refused;
            if (configure_sqlite_for_server()) {
                temp_dir dir;  // removed before _exit (std::exit would skip its destructor)
                create_database(dir.path / "r.db");  // SQLite is initialised from here on
                code = !configure_sqlite_for_server()
                           ? asked_again
                           : static_cast<int>(std::min<std::int64_t>(heap_kib_of_one_reader(dir.path / "r.db"), 253));
            }
            ::_exit(code);
        },
        [&](int status) {
            configured_kib = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            return configured_kib >= 0;
        },
        "");

    temp_dir dir;
    ASSERT_FALSE(dir.path.empty());
    create_database(dir.path / "r.db");  // SQLite is initialised in this process now
    EXPECT_FALSE(configure_sqlite_for_server());
    const std::int64_t default_kib = heap_kib_of_one_reader(dir.path / "r.db");
    if (default_kib < 40)
        GTEST_SKIP() << "a reader takes " << default_kib << " KiB with SQLite's defaults: this SQLite keeps no "
                     << "memory statistics or does no bulk page-cache preallocation, nothing to compare";
    ASSERT_NE(configured_kib, refused) << "SQLite refused the set-up before its first use";
    ASSERT_NE(configured_kib, asked_again) << "a later call asked SQLite again instead of answering the first result";
    EXPECT_LT(configured_kib + 32, default_kib) << "a reader took " << configured_kib << " KiB configured, "
                                                << default_kib << " KiB with SQLite's defaults";
}
