// `relaybait rules check|test|apply|reload`, `relay pause|resume|status|ID`, `relays list` and
// `stats` against a data directory filled through the real write path (store::ingest).
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include <filesystem>
#include <future>
#include <string>

#include "cli_test_support.hpp"
#include "relay/relay_db.hpp"
#include "store/database.hpp"
#include "store/ingest.hpp"

namespace relaybait::cli {
namespace {

namespace fs = std::filesystem;
using testing::run;
using testing::run_with_input;
using testing::temp_dir;

// Our own address ($self.ip), what a probe carries.
constexpr const char* self_ip = "198.51.100.23";

const std::string rules_text = R"toml(
[[rule]]
name = "probe-ip"
kind = "probe"
priority = 10
when = "subject contains encoded($self.ip)"
[rule.actions]
folder = "Probes"
tags = ["probe", "ip-in-subject"]
relay = true

[[rule]]
name = "probe-password"
kind = "probe"
priority = 20
when = "authenticated and body contains $auth.password"
[rule.actions]
folder = "Probes"
tags = ["probe"]

[[rule]]
name = "spam-pills"
kind = "spam"
priority = 30
enabled = false
when = 'subject contains "pills"'
[rule.actions]
tags = ["spam"]
drop = true

[[rule]]
name = "scanner"
kind = "scan"
hook = "connect"
when = 'client_ip in "192.0.2.0/24"'
[rule.actions]
tarpit_ms = 10
)toml";

class rules_relay_commands : public ::testing::Test {
protected:
    void SetUp() override {
        data = dir.path() / "data";
        rules_file = dir.write("rules.toml", rules_text);
        config = write_config("relaybait.toml", "");
        store::ingest ingest(store::ingest_options{.data_dir = data, .fsync = false});
        ingest.record_session(session("aaaaaaaaaaaaaaaa", "203.0.113.5"));
        ingest.record_session(session("bbbbbbbbbbbbbbbb", "203.0.113.6"));
        store::credential_record credential;
        credential.session_id = "bbbbbbbbbbbbbbbb";
        credential.peer_ip = "203.0.113.6";
        credential.at = "2026-11-23T09:59:59.000000Z";
        credential.listener = "smtp";
        credential.mechanism = "PLAIN";
        credential.username = "admin";
        credential.password = "hunter22";
        credential.accepted = true;
        ingest.record_credential(credential);
        probe_id = store_message(ingest, "aaaaaaaaaaaaaaaa", "203.0.113.5", "2026-11-20T10:00:00.000000Z",
                                 "Subject: Relay test " + std::string(self_ip) + "\r\n\r\nhello\r\n", "");
        spam_id = store_message(ingest, "aaaaaaaaaaaaaaaa", "203.0.113.5", "2026-11-22T10:00:00.000000Z",
                                "Subject: Cheap pills \x1b[31mnow\r\n\r\nbuy\r\n", "");
        echo_id = store_message(ingest, "bbbbbbbbbbbbbbbb", "203.0.113.6", "2026-11-23T10:00:00.000000Z",
                                "Subject: it works\r\n\r\nadmin hunter22 on your host\r\n", "admin");
        plain_id = store_message(ingest, "bbbbbbbbbbbbbbbb", "203.0.113.6", "2026-11-23T11:00:00.000000Z",
                                 "Subject: hello\r\n\r\nnothing to see\r\n", "admin");
    }

    fs::path write_config(const std::string& name, const std::string& extra) {
        return dir.write(name, "data_dir = \"" + data.string() + "\"\n" + extra +
                                   "\n[rules]\nfile = \"" + rules_file.string() + "\"\n"
                                   "[identity]\nipv4 = [\"" + self_ip + "\"]\ninterface_addresses = false\n");
    }

    static store::session_record session(const std::string& id, const std::string& ip) {
        store::session_record s;
        s.id = id;
        s.sensor = "mail.example.com";
        s.listener = "smtp";
        s.peer_ip = ip;
        s.peer_port = 40000;
        s.started_at = "2026-11-20T09:00:00.000000Z";
        s.helo_verb = "EHLO";
        s.helo_name = "client.example";
        s.outcome = "quit";
        return s;
    }

    static std::int64_t store_message(store::ingest& ingest, const std::string& session_id, const std::string& ip,
                                      const std::string& at, const std::string& bytes, const std::string& auth_user) {
        const std::string trace = "Received: from client.example (client.example [" + ip +
                                  "])\r\n\tby mail.example.com (Postfix) with ESMTP id X\r\n"
                                  "X-Relaybait-Session: " + session_id + "\r\n";
        auto pending = ingest.begin_message("", trace);
        ingest.append(pending, bytes);
        store::message_record record;
        record.session_id = session_id;
        record.received_at = at;
        record.peer_ip = ip;
        record.peer_port = 40000;
        record.listener = "smtp";
        record.helo_name = "client.example";
        record.mail_from = "spammer@example.org";
        record.recipients = {"spammer@example.net"};
        record.auth_username = auth_user;
        std::promise<store::commit_result> done;
        auto result = done.get_future();
        ingest.commit(pending, record, [&done](store::commit_result r) { done.set_value(std::move(r)); });
        const store::commit_result committed = result.get();
        EXPECT_TRUE(committed.ok) << committed.error;
        return committed.message_id;
    }

    std::vector<std::string> with_config(std::vector<std::string> args) const {
        args.push_back("--config");
        args.push_back(config.string());
        return args;
    }

    store::message_record message(std::int64_t id) const {
        store::database db(data / "relaybait.db", store::database::mode::read_only);
        return db.find_message(id).value();
    }

    boost::json::value json_of(const std::vector<std::string>& args) const {
        const auto r = run(with_config(args));
        EXPECT_EQ(r.code, 0) << r.err;
        return boost::json::parse(r.out);
    }

    temp_dir dir;
    fs::path data, rules_file, config;
    std::int64_t probe_id = 0, spam_id = 0, echo_id = 0, plain_id = 0;
};

// ---- rules check ----------------------------------------------------------------------------

TEST_F(rules_relay_commands, check_the_active_file) {
    const auto r = run(with_config({"rules", "check"}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, rules_file.string() + ": 4 rules (3 enabled) OK\n");
}

TEST_F(rules_relay_commands, check_the_embedded_defaults_when_no_file_is_configured) {
    const auto r = run({"rules", "check", "--data-dir", data.string()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out.rfind("<built-in rules>: ", 0), 0u) << r.out;
    EXPECT_NE(r.out.find(" OK\n"), std::string::npos);
}

TEST_F(rules_relay_commands, check_a_bad_file_exits_2_with_file_line_column) {
    const auto bad = dir.write("bad.toml", "[[rule]]\nname = \"x\"\nkind = \"spam\"\nwhen = 'subject contians \"a\"'\n");
    const auto r = run(with_config({"rules", "check", bad.string()}));
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.rfind(bad.string() + ":4:", 0), 0u) << r.err;
}

TEST_F(rules_relay_commands, check_prints_warnings) {
    const auto odd = dir.write("odd.toml", "[[rule]]\nname = \"x\"\nkind = \"scan\"\nhook = \"connect\"\nwhen = 'subject contains \"a\"'\n");
    const auto r = run(with_config({"rules", "check", odd.string()}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, odd.string() + ": 1 rule (1 enabled) OK\n");
    EXPECT_EQ(r.err.rfind(odd.string() + ":5:", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(": warning: "), std::string::npos) << r.err;
}

TEST_F(rules_relay_commands, check_missing_file_exits_2) {
    const auto r = run(with_config({"rules", "check", (dir.path() / "none.toml").string()}));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("none.toml"), std::string::npos) << r.err;
}

// ---- rules test -----------------------------------------------------------------------------

TEST_F(rules_relay_commands, test_one_rule) {
    const auto r = run(with_config({"rules", "test", "probe-ip"}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("1 of 4 messages match probe-ip\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Relay test " + std::string(self_ip)), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("2026-11-20 10:00:00"), std::string::npos) << r.out;
}

TEST_F(rules_relay_commands, test_first_match_uses_the_sessions_password) {
    const auto document = json_of({"rules", "test", "--json"});
    EXPECT_TRUE(document.at("rule").is_null());
    EXPECT_EQ(document.at("examined").to_number<std::uint64_t>(), 4u);
    const auto& matches = document.at("matches").as_array();
    ASSERT_EQ(matches.size(), 2u);  // spam-pills is disabled: not in the first-match dry run
    EXPECT_EQ(matches[0].at("id").as_int64(), echo_id);
    EXPECT_EQ(matches[0].at("rule").as_string(), "probe-password");
    EXPECT_EQ(matches[1].at("id").as_int64(), probe_id);
    EXPECT_EQ(matches[1].at("rule").as_string(), "probe-ip");

    const auto r = run(with_config({"rules", "test"}));
    EXPECT_NE(r.out.find("2 of 4 messages match a rule\n"), std::string::npos) << r.out;
}

TEST_F(rules_relay_commands, test_a_disabled_rule_and_sanitise_what_is_shown) {
    const auto r = run(with_config({"rules", "test", "spam-pills"}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("1 of 4 messages match spam-pills\n"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos);
    EXPECT_NE(r.out.find("\\x1b[31m"), std::string::npos) << r.out;
}

TEST_F(rules_relay_commands, test_since_folder_and_limit) {
    auto document = json_of({"rules", "test", "--json", "--since", "2026-11-22"});
    EXPECT_EQ(document.at("examined").to_number<std::uint64_t>(), 3u);
    EXPECT_EQ(document.at("matched").to_number<std::uint64_t>(), 1u);
    document = json_of({"rules", "test", "--json", "--since", "2026-11-23 10:30"});
    EXPECT_EQ(document.at("examined").to_number<std::uint64_t>(), 1u);
    document = json_of({"rules", "test", "--json", "--folder", "Probes"});
    EXPECT_EQ(document.at("examined").to_number<std::uint64_t>(), 0u);
    document = json_of({"rules", "test", "--json", "--folder", "inbox", "--limit", "2"});
    EXPECT_EQ(document.at("examined").to_number<std::uint64_t>(), 2u);
    document = json_of({"rules", "test", "--json", "--folder", "INBOX"});  // store::maildir_folder_for
    EXPECT_EQ(document.at("examined").to_number<std::uint64_t>(), 4u);

    EXPECT_EQ(run(with_config({"rules", "test", "--since", "yesterday"})).code, 2);
    EXPECT_EQ(run(with_config({"rules", "test", "--folder", "../x"})).code, 2);
}

TEST_F(rules_relay_commands, test_unknown_rule_or_other_hook_exits_2) {
    auto r = run(with_config({"rules", "test", "no-such-rule"}));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("no rule named no-such-rule"), std::string::npos) << r.err;
    r = run(with_config({"rules", "test", "scanner"}));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("only data rules can be tested on stored messages"), std::string::npos) << r.err;
}

TEST_F(rules_relay_commands, test_skips_messages_whose_file_is_gone) {
    fs::remove(data / message(plain_id).maildir_path);
    const auto r = run(with_config({"rules", "test"}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("2 of 3 messages match a rule (1 skipped: file gone)\n"), std::string::npos) << r.out;
}

// ---- rules apply ----------------------------------------------------------------------------

TEST_F(rules_relay_commands, apply_moves_and_tags) {
    const auto r = run(with_config({"rules", "apply", "probe-ip", "--yes"}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("probe-ip: 1 matching, 1 classified as probe, 1 moved to .Probes, 1 tagged, 0 dropped\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("relaybait relay ID"), std::string::npos) << r.out;  // relay is not applied
    const auto moved = message(probe_id);
    EXPECT_EQ(moved.folder, ".Probes");
    EXPECT_EQ(moved.tags, (std::vector<std::string>{"probe", "ip-in-subject"}));
    EXPECT_EQ(moved.rule, "probe-ip");
    EXPECT_EQ(moved.kind, "probe");
    EXPECT_TRUE(fs::exists(data / moved.maildir_path)) << moved.maildir_path;

    // The dry run over the folder finds it there; a second apply changes nothing.
    EXPECT_EQ(json_of({"rules", "test", "probe-ip", "--json", "--folder", ".Probes"}).at("matched").to_number<std::uint64_t>(), 1u);
    const auto again = run(with_config({"rules", "apply", "probe-ip", "--yes"}));
    EXPECT_NE(again.out.find("probe-ip: 1 matching, 0 classified as probe, 0 moved to .Probes, 0 tagged, 0 dropped\n"), std::string::npos)
        << again.out;
}

TEST_F(rules_relay_commands, apply_asks_first) {
    auto r = run_with_input(with_config({"rules", "apply", "spam-pills"}), "n\n");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("Apply to 1 message? [y/N]"), std::string::npos) << r.out;
    EXPECT_FALSE(message(spam_id).dropped);

    r = run_with_input(with_config({"rules", "apply", "spam-pills", "--since", "2026-11-21"}), "y\n");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("spam-pills: 1 matching, 1 classified as spam, 0 moved, 1 tagged, 1 dropped\n"), std::string::npos) << r.out;
    const auto dropped = message(spam_id);
    EXPECT_TRUE(dropped.dropped);
    EXPECT_EQ(dropped.maildir_path, "");
    EXPECT_EQ(dropped.tags, std::vector<std::string>{"spam"});
    // Dropped messages have no file: the next dry run skips them.
    EXPECT_EQ(json_of({"rules", "test", "spam-pills", "--json"}).at("skipped").to_number<std::uint64_t>(), 1u);
}

TEST_F(rules_relay_commands, apply_needs_a_data_rule) {
    EXPECT_EQ(run(with_config({"rules", "apply", "scanner", "--yes"})).code, 2);
    EXPECT_EQ(run(with_config({"rules", "apply", "nope", "--yes"})).code, 2);
    EXPECT_EQ(run(with_config({"rules", "apply"})).code, 2);
}

// ---- rules reload ---------------------------------------------------------------------------

TEST_F(rules_relay_commands, reload_without_a_running_server_exits_1) {
    const auto r = run(with_config({"rules", "reload"}));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("relaybait is not running (no " + (data / "relaybait.pid").string() + ")"), std::string::npos)
        << r.err;
}

TEST_F(rules_relay_commands, reload_with_a_stale_pid_file_exits_1) {
    dir.write("data/relaybait.pid", "0\n");  // never signalled: 0 is a process group
    EXPECT_EQ(run(with_config({"rules", "reload"})).code, 1);
}

TEST_F(rules_relay_commands, reload_refuses_a_bad_file_without_signalling) {
    dir.write("data/relaybait.pid", "1\n");  // would be init: must never be signalled
    dir.write("rules.toml", "[[rule]]\nname = \"x\"\nbogus = 1\n");
    const auto r = run(with_config({"rules", "reload"}));
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(r.err.rfind(rules_file.string() + ":3:", 0), 0u) << r.err;
}

// ---- relay ----------------------------------------------------------------------------------

TEST_F(rules_relay_commands, relay_pause_resume_status) {
    auto r = run(with_config({"relay", "pause"}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("relay paused"), std::string::npos) << r.out;
    EXPECT_TRUE(relay::relay_db(data / "relaybait.db").paused());
    auto status = json_of({"relay", "status", "--json"});
    EXPECT_TRUE(status.at("paused").as_bool());
    EXPECT_TRUE(status.at("enabled").as_bool());
    EXPECT_EQ(status.at("daily").to_number<std::uint64_t>(), 20u);

    r = run(with_config({"relay", "status"}));
    EXPECT_NE(r.out.find("paused:    yes"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("today:     0 of 20"), std::string::npos) << r.out;

    // A paused relay refuses a manual relay too.
    r = run(with_config({"relay", std::to_string(probe_id), "--yes"}));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("refused by the paused cap"), std::string::npos) << r.err;

    r = run(with_config({"relay", "resume"}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("relay resumed"), std::string::npos) << r.out;
    EXPECT_FALSE(relay::relay_db(data / "relaybait.db").paused());
}

TEST_F(rules_relay_commands, relay_a_message_once) {
    auto r = run(with_config({"relay", std::to_string(probe_id), "--yes"}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("Relay test"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("queued: 1 recipient(s); the running server delivers them (relaybait relays list)\n"),
              std::string::npos)
        << r.out;

    // By queue id this time: the same message, refused as identical.
    r = run(with_config({"relay", message(probe_id).queue_id, "--yes"}));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("refused by the identical cap"), std::string::npos) << r.err;

    const auto queue = json_of({"relays", "list", "--json"}).as_array();
    ASSERT_EQ(queue.size(), 1u);
    EXPECT_EQ(queue[0].at("state").as_string(), "queued");
    EXPECT_EQ(queue[0].at("recipient").as_string(), "spammer@example.net");
    EXPECT_EQ(queue[0].at("message_id").as_string(), std::to_string(probe_id));
    EXPECT_TRUE(queue[0].at("manual").as_bool());

    r = run(with_config({"relays", "list"}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("spammer@example.net"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("queued"), std::string::npos) << r.out;

    const auto refused = json_of({"relays", "list", "--refused", "--json"}).as_array();
    ASSERT_EQ(refused.size(), 1u);
    EXPECT_EQ(refused[0].at("cap").as_string(), "identical");
    EXPECT_EQ(refused[0].at("client_ip").as_string(), "203.0.113.5");
    r = run(with_config({"relays", "list", "--refused"}));
    EXPECT_NE(r.out.find("identical"), std::string::npos) << r.out;

    EXPECT_EQ(json_of({"relay", "status", "--json"}).at("today").to_number<std::uint64_t>(), 1u);
}

TEST_F(rules_relay_commands, relay_asks_first) {
    const auto r = run_with_input(with_config({"relay", std::to_string(echo_id)}), "n\n");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("Relay this message to 1 recipient(s)? [y/N]"), std::string::npos) << r.out;
    EXPECT_TRUE(json_of({"relays", "list", "--json"}).as_array().empty());
    EXPECT_TRUE(json_of({"relays", "list", "--refused", "--json"}).as_array().empty());

    const auto yes = run_with_input(with_config({"relay", std::to_string(echo_id)}), "y\n");
    EXPECT_EQ(yes.code, 0) << yes.err;
    EXPECT_EQ(json_of({"relays", "list", "--json"}).as_array().size(), 1u);
}

TEST_F(rules_relay_commands, relay_respects_the_kill_switch_and_unknown_ids) {
    const auto off = write_config("off.toml", "[relay]\nenabled = false\n");
    auto r = run({"relay", std::to_string(probe_id), "--yes", "--config", off.string()});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("refused by the disabled cap"), std::string::npos) << r.err;
    r = run(with_config({"relay", "999999", "--yes"}));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("message 999999 not found"), std::string::npos) << r.err;
    EXPECT_EQ(run(with_config({"relay"})).code, 2);
}

// ---- stats ----------------------------------------------------------------------------------

TEST_F(rules_relay_commands, stats) {
    ASSERT_EQ(run(with_config({"rules", "apply", "probe-ip", "--yes"})).code, 0);
    ASSERT_EQ(run(with_config({"rules", "apply", "spam-pills", "--yes"})).code, 0);
    ASSERT_EQ(run(with_config({"relay", std::to_string(probe_id), "--yes"})).code, 0);

    auto document = json_of({"stats", "--json"});
    const auto& messages = document.at("messages");
    EXPECT_EQ(messages.at("total").to_number<std::uint64_t>(), 4u);
    EXPECT_EQ(messages.at("dropped").to_number<std::uint64_t>(), 1u);
    EXPECT_EQ(document.at("sessions").to_number<std::uint64_t>(), 2u);
    EXPECT_EQ(document.at("credentials").to_number<std::uint64_t>(), 1u);
    EXPECT_EQ(document.at("relay").at("today").to_number<std::uint64_t>(), 1u);
    EXPECT_EQ(document.at("relay").at("queue").at("queued").to_number<std::uint64_t>(), 1u);
    const auto& ips = messages.at("top_client_ips").as_array();
    ASSERT_EQ(ips.size(), 2u);
    EXPECT_EQ(ips[0].at("count").to_number<std::uint64_t>(), 2u);

    document = json_of({"stats", "--json", "--since", "2026-11-23"});
    EXPECT_EQ(document.at("messages").at("total").to_number<std::uint64_t>(), 2u);

    const auto r = run(with_config({"stats"}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("messages:    4\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(".Probes"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("1 of 20"), std::string::npos) << r.out;
}

TEST_F(rules_relay_commands, commands_need_a_data_directory) {
    const auto r = run({"stats", "--data-dir", (dir.path() / "nowhere").string()});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("no data directory"), std::string::npos) << r.err;
    EXPECT_EQ(run({"relays", "list", "--data-dir", (dir.path() / "nowhere").string()}).code, 1);
}

}  // namespace
}  // namespace relaybait::cli
