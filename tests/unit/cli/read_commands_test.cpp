// The read commands against a real database filled in a temporary data directory.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "cli_test_support.hpp"
#include "store/database.hpp"

namespace relaybait::cli {
namespace {

using testing::run;
using testing::temp_dir;

const std::string raw_message = std::string("Received: from x\r\nSubject: \x1b[2Jhi\r\n\r\nbody\0\xff\r\n", 38);

class read_commands : public ::testing::Test {
protected:
    void SetUp() override {
        store::database db(dir.path() / "relaybait.db", store::database::mode::read_write);
        db.begin();
        db.upsert_session(session("aaaaaaaaaaaaaaaa", "198.51.100.7", "2026-11-23T18:00:00.000000Z"));
        db.upsert_session(session("bbbbbbbbbbbbbbbb", "203.0.113.9", "2026-11-23T18:05:00.000000Z"));
        first_id = db.insert_message(message("aaaaaaaaaaaaaaaa", "198.51.100.7", "4F9D21A0B3", "2026-11-23T18:00:01.000000Z"));
        auto second = message("bbbbbbbbbbbbbbbb", "203.0.113.9", "7C1E22B0D4", "2026-11-23T18:05:01.000000Z");
        second.maildir_path = "maildir/new/2.M2P2.mail";
        second_id = db.insert_message(second);
        store::credential_record credential;
        credential.session_id = "bbbbbbbbbbbbbbbb";
        credential.peer_ip = "203.0.113.9";
        credential.at = "2026-11-23T18:05:00.500000Z";
        credential.listener = "smtp";
        credential.mechanism = "LOGIN";
        credential.username = "admin\x1b[31m";
        credential.password = "123456";
        credential.raw = "YWRtaW4= MTIzNDU2";
        credential.accepted = true;
        db.insert_credential(credential);
        db.commit();
        dir.write("maildir/new/1.M1P1.mail", raw_message);
    }

    static store::session_record session(std::string id, std::string ip, std::string at) {
        store::session_record s;
        s.id = std::move(id);
        s.sensor = "mail.example.com";
        s.listener = "smtp";
        s.peer_ip = std::move(ip);
        s.peer_port = 40000;
        s.local_ip = "192.0.2.1";
        s.local_port = 25;
        s.started_at = at;
        s.ended_at = at;
        s.helo_verb = "EHLO";
        s.helo_name = "client.example";
        s.transcript = {{at, 'S', "220 mail.example.com ESMTP Postfix"}, {at, 'C', "EHLO \x1b]0;x\x07"}};
        s.commands = 1;
        s.outcome = "quit";
        return s;
    }

    static store::message_record message(std::string session, std::string ip, std::string queue_id, std::string at) {
        store::message_record m;
        m.queue_id = std::move(queue_id);
        m.session_id = std::move(session);
        m.received_at = std::move(at);
        m.peer_ip = std::move(ip);
        m.peer_port = 40000;
        m.listener = "smtp";
        m.helo_name = "client.example";
        m.mail_from = "spam@example.org";
        m.recipients = {"victim@example.net"};
        m.maildir_path = "maildir/new/1.M1P1.mail";
        m.size = raw_message.size();
        m.headers.subject = "\x1b[2Jhi";
        return m;
    }

    temp_dir dir;
    std::int64_t first_id = 0, second_id = 0;
};

TEST_F(read_commands, messages_list_table_newest_first) {
    const auto r = run({"messages", "list", "--data-dir", dir.str()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos);
    const auto newest = r.out.find("203.0.113.9"), oldest = r.out.find("198.51.100.7");
    ASSERT_NE(newest, std::string::npos) << r.out;
    ASSERT_NE(oldest, std::string::npos) << r.out;
    EXPECT_LT(newest, oldest);
    EXPECT_NE(r.out.find("\\x1b[2Jhi"), std::string::npos);
}

TEST_F(read_commands, messages_list_filters) {
    auto r = run({"messages", "list", "--data-dir", dir.str(), "--json", "--ip", "198.51.100.7"});
    ASSERT_EQ(r.code, 0) << r.err;
    auto list = boost::json::parse(r.out).as_array();
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].at("queue_id").as_string(), "4F9D21A0B3");

    r = run({"messages", "list", "--data-dir", dir.str(), "--json", "--session", "bbbbbbbbbbbbbbbb"});
    list = boost::json::parse(r.out).as_array();
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].at("id").as_int64(), second_id);

    r = run({"messages", "list", "--data-dir", dir.str(), "--json", "--limit", "1"});
    EXPECT_EQ(boost::json::parse(r.out).as_array().size(), 1u);
}

TEST_F(read_commands, messages_show_by_id_or_queue_id) {
    auto r = run({"messages", "show", std::to_string(first_id), "--data-dir", dir.str()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("queue id:"), std::string::npos);
    EXPECT_NE(r.out.find("4F9D21A0B3"), std::string::npos);
    r = run({"messages", "show", "7C1E22B0D4", "--data-dir", dir.str(), "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(boost::json::parse(r.out).at("id").as_int64(), second_id);
    r = run({"messages", "show", "999999", "--data-dir", dir.str()});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "relaybait: message 999999 not found (give a database id or a queue id)\n");
}

TEST_F(read_commands, messages_show_raw_is_byte_for_byte) {
    const auto r = run({"messages", "show", std::to_string(first_id), "--raw", "--data-dir", dir.str()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, raw_message);
}

// Raw attacker bytes to a terminal are refused (escape sequences would act on it); to a file or a
// pipe, and with --force, they are written as they are.
TEST_F(read_commands, messages_show_raw_is_refused_to_a_terminal) {
    const auto run_on = [&](bool terminal, std::vector<std::string> args) {
        std::ostringstream out, err;
        std::istringstream in;
        testing::result r;
        r.code = run_app(args, console{out, err, in, terminal}, [](const config::settings&) { return 0; });
        r.out = out.str();
        r.err = err.str();
        return r;
    };
    const std::vector<std::string> raw = {"messages", "show", std::to_string(first_id), "--raw", "--data-dir", dir.str()};
    auto r = run_on(true, raw);
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(r.out, "");
    EXPECT_NE(r.err.find("redirect it to a file or pipe it"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
    auto forced = raw;
    forced.push_back("--force");
    r = run_on(true, forced);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, raw_message);
    r = run_on(false, raw);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, raw_message);
    // --force only goes with --raw.
    EXPECT_EQ(run_on(true, {"messages", "show", std::to_string(first_id), "--force", "--data-dir", dir.str()}).code, 2);
    // Table output to a terminal is escaped, not refused.
    EXPECT_EQ(run_on(true, {"messages", "show", std::to_string(first_id), "--data-dir", dir.str()}).code, 0);
}

// The path check is the store's (store::stored_message_path): a stored path that leaves the
// Maildir is refused even when it stays inside the data directory (the database itself).
TEST_F(read_commands, messages_show_raw_refuses_paths_outside_the_maildir) {
    std::vector<std::int64_t> ids;
    {
        store::database db(dir.path() / "relaybait.db", store::database::mode::read_write);
        db.begin();
        int n = 0;
        for (const char* path : {"relaybait.db", "../outside", "/etc/passwd", "maildir/../relaybait.db", "maildir/x\x1b[2J"}) {
            auto m = message("aaaaaaaaaaaaaaaa", "198.51.100.7", "9PATH" + std::to_string(n++), "2026-11-23T18:00:02.000000Z");
            m.maildir_path = path;
            ids.push_back(db.insert_message(m));
        }
        db.commit();
    }
    for (const auto id : ids) {
        const auto r = run({"messages", "show", std::to_string(id), "--raw", "--data-dir", dir.str()});
        EXPECT_EQ(r.code, 1) << id;
        EXPECT_EQ(r.out, "") << id;
        EXPECT_EQ(r.err.rfind("relaybait: refusing message path ", 0), 0u) << r.err;
        EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << "the refused path is escaped";
    }
}

TEST_F(read_commands, sessions_list_and_show) {
    auto r = run({"sessions", "list", "--data-dir", dir.str()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("aaaaaaaaaaaaaaaa"), std::string::npos);
    EXPECT_LT(r.out.find("bbbbbbbbbbbbbbbb"), r.out.find("aaaaaaaaaaaaaaaa"));

    r = run({"sessions", "show", "aaaaaaaaaaaaaaaa", "--data-dir", dir.str()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("2026-11-23T18:00:00.000000Z  S: 220 mail.example.com ESMTP Postfix\n"), std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("C: EHLO \\x1b]0;x\\x07\n"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos);

    r = run({"sessions", "show", "aaaaaaaaaaaaaaaa", "--data-dir", dir.str(), "--json"});
    const auto session = boost::json::parse(r.out);
    EXPECT_EQ(session.at("transcript").as_array().size(), 2u);

    EXPECT_EQ(run({"sessions", "show", "cccccccccccccccc", "--data-dir", dir.str()}).code, 1);
}

TEST_F(read_commands, credentials_list) {
    auto r = run({"credentials", "list", "--data-dir", dir.str()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("admin\\x1b[31m"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("123456"), std::string::npos);
    r = run({"credentials", "list", "--data-dir", dir.str(), "--json"});
    const auto list = boost::json::parse(r.out).as_array();
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].at("username").as_string(), "admin\x1b[31m");
    EXPECT_TRUE(list[0].at("accepted").as_bool());
}

}  // namespace
}  // namespace relaybait::cli
