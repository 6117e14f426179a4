// `relaybait relay ID`, `relay status` and `stats` against a database where the server
// published its caps (relay/published_limits.hpp): a CLI run without --config (the built-in
// defaults: daily 20, per sender 5, 5 recipients, relay enabled, test mode off) books against
// the stricter of those and the server's, and shows the caps it applies and where from.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include <filesystem>
#include <future>
#include <string>

#include "cli_test_support.hpp"
#include "relay/published_limits.hpp"
#include "relay/relay_db.hpp"
#include "relay/safety.hpp"
#include "store/ingest.hpp"

namespace relaybait::cli {
namespace {

namespace fs = std::filesystem;
using testing::run;
using testing::temp_dir;

class relay_published_caps : public ::testing::Test {
protected:
    void SetUp() override {
        data = dir.path() / "data";
        store::ingest ingest(store::ingest_options{.data_dir = data, .fsync = false});
        store::session_record s;
        s.id = "cccccccccccccccc";
        s.sensor = "mail.example.com";
        s.listener = "smtp";
        s.peer_ip = "203.0.113.5";
        s.peer_port = 40000;
        s.started_at = "2026-11-20T09:00:00.000000Z";
        s.helo_verb = "EHLO";
        s.helo_name = "client.example";
        s.outcome = "quit";
        ingest.record_session(s);
        one_a = store_message(ingest, "one@spam.example", {"victim@example.net"}, "first");
        one_b = store_message(ingest, "one@spam.example", {"victim2@example.net"}, "second");
        two_recipients = store_message(ingest, "two@spam.example", {"a@example.net", "b@example.org"}, "third");
        other = store_message(ingest, "three@spam.example", {"c@example.com"}, "fourth");
    }

    static std::int64_t store_message(store::ingest& ingest, const std::string& from, std::vector<std::string> rcpts,
                                      const std::string& body) {
        auto pending = ingest.begin_message("", "X-Relaybait-Session: cccccccccccccccc\r\n");
        ingest.append(pending, "Subject: probe " + body + "\r\n\r\n" + body + "\r\n");
        store::message_record record;
        record.session_id = "cccccccccccccccc";
        record.received_at = "2026-11-20T10:00:00.000000Z";
        record.peer_ip = "203.0.113.5";
        record.peer_port = 40000;
        record.listener = "smtp";
        record.helo_name = "client.example";
        record.mail_from = from;
        record.recipients = std::move(rcpts);
        std::promise<store::commit_result> done;
        auto result = done.get_future();
        ingest.commit(pending, record, [&done](store::commit_result r) { done.set_value(std::move(r)); });
        const store::commit_result committed = result.get();
        EXPECT_TRUE(committed.ok) << committed.error;
        return committed.message_id;
    }

    // What `serve` published: daily 2, per sender 1, one recipient, test mode; enabled or not.
    void publish_server_caps(bool enabled) const {
        relay::relay_limits server;
        server.enabled = enabled;
        server.daily = 2;
        server.per_sender_daily = 1;
        server.max_recipients = 1;
        server.test_mode = true;
        server.test_server = "127.0.0.1:2525";
        server.test_recipient = "operator@example.org";
        relay::relay_db db(data / "relaybait.db");
        relay::publish_limits(db, server, "sensor-1", 31337);
    }

    // No --config: the CLI's own limits are the built-in defaults.
    testing::result cli(std::vector<std::string> args) const {
        args.push_back("--data-dir");
        args.push_back(data.string());
        return run(args);
    }

    boost::json::value json_of(const std::vector<std::string>& args) const {
        const auto r = cli(args);
        EXPECT_EQ(r.code, 0) << r.err;
        return boost::json::parse(r.out);
    }

    temp_dir dir;
    fs::path data;
    std::int64_t one_a = 0, one_b = 0, two_recipients = 0, other = 0;
};

TEST_F(relay_published_caps, the_servers_kill_switch_refuses_a_manual_relay) {
    publish_server_caps(false);
    const auto r = cli({"relay", std::to_string(one_a), "--yes"});
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.err.find("refused by the disabled cap"), std::string::npos) << r.err;
    EXPECT_TRUE(json_of({"relays", "list", "--json"}).as_array().empty());

    const auto status = json_of({"relay", "status", "--json"});
    EXPECT_FALSE(status.at("enabled").as_bool());
    const auto text = cli({"relay", "status"});
    EXPECT_NE(text.out.find("relay:     disabled (the server runs with relay.enabled = false)"), std::string::npos)
        << text.out;
}

// Before any server has published its caps, a manual relay says whose caps bound it; once one
// has, it does not.
TEST_F(relay_published_caps, a_manual_relay_warns_when_no_server_has_published_its_caps) {
    const auto before = cli({"relay", std::to_string(one_a), "--yes"});
    EXPECT_EQ(before.code, 0) << before.err;
    EXPECT_NE(before.err.find("warning: no server has published its relay caps in this database; the caps of the "
                              "built-in defaults (no --config) apply"),
              std::string::npos)
        << before.err;
    publish_server_caps(true);
    const auto after = cli({"relay", std::to_string(other), "--yes"});
    EXPECT_EQ(after.code, 0) << after.err;
    EXPECT_EQ(after.err.find("warning"), std::string::npos) << after.err;
}

TEST_F(relay_published_caps, the_servers_caps_and_test_mode_apply_to_a_manual_relay) {
    publish_server_caps(true);

    // max_recipients 1 (the defaults: 5).
    auto r = cli({"relay", std::to_string(two_recipients), "--yes"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("refused by the recipients cap"), std::string::npos) << r.err;

    // Queued in test mode: the server runs with --test-mode, the CLI's defaults have it off.
    r = cli({"relay", std::to_string(one_a), "--yes"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto queue = json_of({"relays", "list", "--json"}).as_array();
    ASSERT_EQ(queue.size(), 1u);
    EXPECT_TRUE(queue[0].at("test_mode").as_bool());

    // per_sender 1 (the defaults: 5).
    r = cli({"relay", std::to_string(one_b), "--yes"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("refused by the per_sender cap"), std::string::npos) << r.err;

    // daily 2 (the defaults: 20): the second copy of the day, then none.
    relay::relay_request filler;
    filler.message_id = "filler";
    filler.file = "x";
    filler.sha256 = "filler";
    filler.mail_from = "filler@spam.example";
    filler.recipients = {"filler@example.org"};
    filler.client_ip = "192.0.2.99";
    filler.size = 10;
    ASSERT_TRUE(relay::safety(data / "relaybait.db", relay::relay_limits{}).check_and_reserve(filler).allowed);
    r = cli({"relay", std::to_string(other), "--yes"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("refused by the daily cap"), std::string::npos) << r.err;
}

TEST_F(relay_published_caps, status_and_stats_show_the_caps_applied_and_their_source) {
    // Nothing published yet: the configuration's (here the built-in defaults).
    auto status = json_of({"relay", "status", "--json"});
    EXPECT_EQ(status.at("daily").to_number<std::uint64_t>(), 20u);
    EXPECT_EQ(status.at("caps_source").as_string(), "config");
    EXPECT_TRUE(status.at("published").is_null());
    auto text = cli({"relay", "status"});
    EXPECT_NE(text.out.find("caps from: this configuration's (no server has published its caps in this database)"),
              std::string::npos)
        << text.out;

    publish_server_caps(true);
    status = json_of({"relay", "status", "--json"});
    EXPECT_EQ(status.at("daily").to_number<std::uint64_t>(), 2u);
    EXPECT_TRUE(status.at("enabled").as_bool());
    EXPECT_TRUE(status.at("test_mode").as_bool());
    EXPECT_EQ(status.at("test_recipient").as_string(), "operator@example.org");
    EXPECT_EQ(status.at("caps").at("per_sender_daily").to_number<std::uint64_t>(), 1u);
    EXPECT_EQ(status.at("caps").at("max_recipients").to_number<std::uint64_t>(), 1u);
    EXPECT_EQ(status.at("caps_source").as_string(), "server");
    EXPECT_EQ(status.at("published").at("pid").to_number<std::int64_t>(), 31337);
    EXPECT_EQ(status.at("published").at("sensor").as_string(), "sensor-1");

    text = cli({"relay", "status"});
    ASSERT_EQ(text.code, 0) << text.err;
    EXPECT_NE(text.out.find("today:     0 of 2 "), std::string::npos) << text.out;
    EXPECT_NE(text.out.find("test mode: on: every relay goes to operator@example.org via 127.0.0.1:2525"),
              std::string::npos)
        << text.out;
    EXPECT_NE(text.out.find("caps:      daily 2, per sender 1, "), std::string::npos) << text.out;
    EXPECT_NE(text.out.find("max 1 recipient(s)"), std::string::npos) << text.out;
    EXPECT_NE(text.out.find("caps from: the server's (sensor sensor-1, pid 31337, published at "), std::string::npos)
        << text.out;

    const auto stats = json_of({"stats", "--json"});
    EXPECT_EQ(stats.at("relay").at("daily").to_number<std::uint64_t>(), 2u);
    EXPECT_EQ(stats.at("relay").at("caps_source").as_string(), "server");
    const auto stats_text = cli({"stats"});
    EXPECT_NE(stats_text.out.find("  caps from: the server's (sensor sensor-1, pid 31337, published at "), std::string::npos)
        << stats_text.out;

    // A configuration stricter on one cap: the stricter of the two, said so.
    const auto config = dir.write("strict.toml", "data_dir = \"" + data.string() +
                                                     "\"\n[relay]\nper_domain_daily = 1\n");
    const auto mixed = run({"relay", "status", "--config", config.string()});
    ASSERT_EQ(mixed.code, 0) << mixed.err;
    EXPECT_NE(mixed.out.find("per domain 1,"), std::string::npos) << mixed.out;
    EXPECT_NE(mixed.out.find("caps from: the stricter of this configuration's and the server's (sensor sensor-1, "
                             "pid 31337, published at "),
              std::string::npos)
        << mixed.out;
}

}  // namespace
}  // namespace relaybait::cli
