// The rules at the hooks of one session: verdicts for the engine, the DATA-end classifier the
// store runs, and what the session does after the commit.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "net/session_rules.hpp"
#include "rules/expr.hpp"
#include "log_capture.hpp"

namespace relaybait::net {
namespace {

constexpr std::string_view rules_text = R"toml(
[[rule]]
name = "scanner-refused"
kind = "scan"
hook = "connect"
when = 'client_ip in ["192.0.2.0/24"]'
[rule.actions]
reply = { code = 554, text = "5.7.1 Go away" }

[[rule]]
name = "closing-helo"
kind = "scan"
hook = "ehlo"
when = 'helo equals "close.example"'
[rule.actions]
reply = { code = 421, text = "4.7.0 mx1.example.net Error: closing" }

[[rule]]
name = "greeter"
kind = "scan"
hook = "connect"
when = 'client_ip in ["198.51.100.0/24"]'
[rule.actions]
reply = { code = 220, text = "mx1.example.net ESMTP" }
tarpit_ms = 300

[[rule]]
name = "slow-helo"
kind = "scan"
hook = "ehlo"
when = 'helo equals "slow.example"'
[rule.actions]
tarpit_ms = 1500
tags = ["slow"]

[[rule]]
name = "bulk-domain"
kind = "spam"
hook = "rcpt"
when = 'rcpt_domain equals "bulk.example"'
[rule.actions]
folder = "Bulk"
tags = ["bulk"]
reply = { code = 451, text = "4.7.1 Try again later" }

[[rule]]
name = "probe-ip-in-subject"
kind = "probe"
when = "subject contains encoded($self.ip)"
[rule.actions]
folder = "Probes"
tags = ["probe"]
relay = true

[[rule]]
name = "reject-campaign"
kind = "spam"
when = 'subject contains "Cheap pills"'
[rule.actions]
reply = { code = 550, text = "5.7.1 Message rejected" }
tarpit_ms = 200
drop = true
)toml";

struct fixture {
    rules::rule_store store{"", {}};
    std::vector<std::string> matches;
    session_rules rules{store, 1 << 20, [this](rules::hook_point hook, const rules::rule& rule) {
                            matches.push_back(std::string(rules::to_string(hook)) + ":" + rule.name);
                        }};
    smtp::connection_facts facts;

    fixture() {
        rules::self_identity self;
        self.ipv4 = {"198.51.100.25"};
        store.install(rules::rule_set::parse(rules_text, "test.toml", self));
        facts.peer_ip = "203.0.113.9";
        facts.listener = smtp::listener_kind::smtp;
    }

    store::classification classify(std::string_view message, const smtp::envelope& env = {}) {
        auto classifier = rules.classifier(facts, env, message.size());
        return classifier.classify(message, false);
    }
};

TEST(SessionRules, ConnectRuleRefusesBeforeTheBanner) {
    fixture f;
    f.facts.peer_ip = "192.0.2.44";
    const auto verdict = f.rules.at_connect(f.facts);
    EXPECT_EQ(verdict.what, smtp::stage_verdict::kind::reply);
    EXPECT_EQ(verdict.reply, "554 5.7.1 Go away");
    EXPECT_EQ(f.matches, std::vector<std::string>{"connect:scanner-refused"});
}

TEST(SessionRules, ReplyCode421AlwaysDisconnects) {
    fixture f;
    const auto verdict = f.rules.decide(smtp::stage::ehlo, f.facts, {}, std::nullopt, "close.example");
    EXPECT_EQ(verdict.what, smtp::stage_verdict::kind::disconnect);
    EXPECT_EQ(verdict.reply, "421 4.7.0 mx1.example.net Error: closing");
}

TEST(SessionRules, ConnectRuleCanReplaceTheBannerAndDelayIt) {
    fixture f;
    f.facts.peer_ip = "198.51.100.9";
    const auto verdict = f.rules.at_connect(f.facts);
    EXPECT_EQ(verdict.what, smtp::stage_verdict::kind::reply);  // a 2xx: the session goes on (session.cpp greet)
    EXPECT_EQ(verdict.reply, "220 mx1.example.net ESMTP");
    EXPECT_EQ(verdict.delay, std::chrono::milliseconds(300));
}

TEST(SessionRules, NoMatchProceeds) {
    fixture f;
    EXPECT_EQ(f.rules.at_connect(f.facts).what, smtp::stage_verdict::kind::proceed);
    EXPECT_EQ(f.rules.decide(smtp::stage::ehlo, f.facts, {}, std::nullopt, "fast.example").what,
              smtp::stage_verdict::kind::proceed);
    EXPECT_TRUE(f.matches.empty());
}

TEST(SessionRules, TarpitAtEhlo) {
    fixture f;
    const auto verdict = f.rules.decide(smtp::stage::ehlo, f.facts, {}, std::nullopt, "slow.example");
    EXPECT_EQ(verdict.what, smtp::stage_verdict::kind::proceed);
    EXPECT_EQ(verdict.delay, std::chrono::milliseconds(1500));
}

TEST(SessionRules, RcptRuleSeesTheRecipientBeingChecked) {
    fixture f;
    smtp::envelope env;
    env.mail_from = "a@spam.example";
    const auto verdict = f.rules.decide(smtp::stage::rcpt, f.facts, env, std::nullopt, "x@bulk.example");
    EXPECT_EQ(verdict.reply, "451 4.7.1 Try again later");
}

TEST(SessionRules, EarlierHookFolderAndTagsApplyWhenNoDataRuleMatches) {
    fixture f;
    f.rules.decide(smtp::stage::ehlo, f.facts, {}, std::nullopt, "slow.example");
    f.rules.decide(smtp::stage::rcpt, f.facts, {}, std::nullopt, "x@bulk.example");
    const auto decided = f.classify("Subject: hello\r\n\r\nbody\r\n");
    EXPECT_EQ(decided.folder, "Bulk");
    EXPECT_EQ(decided.tags, (std::vector<std::string>{"slow", "bulk"}));
    EXPECT_EQ(decided.rule, "bulk-domain");
    // Decided by an earlier hook: no reply change and never a relay at DATA end.
    const auto outcome = f.rules.after_commit(decided);
    EXPECT_FALSE(outcome.relay);
    EXPECT_EQ(outcome.verdict.what, smtp::stage_verdict::kind::proceed);
}

TEST(SessionRules, ProbeIsFiledAndAskedToBeRelayed) {
    fixture f;
    const auto decided = f.classify("From: a@spam.example\r\nSubject: Relay test 198.51.100.25\r\n\r\nhello\r\n");
    EXPECT_EQ(decided.folder, "Probes");
    EXPECT_EQ(decided.rule, "probe-ip-in-subject");
    EXPECT_EQ(decided.kind, "probe");
    EXPECT_FALSE(decided.drop);
    const auto outcome = f.rules.after_commit(decided);
    EXPECT_TRUE(outcome.relay);
    EXPECT_EQ(outcome.verdict.what, smtp::stage_verdict::kind::proceed);
    EXPECT_EQ(f.matches, std::vector<std::string>{"data:probe-ip-in-subject"});
}

TEST(SessionRules, Base64ProbeInSubjectIsFound) {
    fixture f;
    // "Relay 198.51.100.25" base64-encoded inside an RFC 2047 word is decoded by MIME; the
    // raw base64 of the IP alone is one of the encodings of $self.ip.
    const auto decided = f.classify("Subject: MTk4LjUxLjEwMC4yNQ==\r\n\r\nx\r\n");
    EXPECT_EQ(decided.rule, "probe-ip-in-subject");
}

TEST(SessionRules, DataReplyAndDropAreReported) {
    fixture f;
    const auto decided = f.classify("Subject: Cheap pills\r\n\r\nbuy\r\n");
    EXPECT_TRUE(decided.drop);
    const auto outcome = f.rules.after_commit(decided);
    EXPECT_FALSE(outcome.relay);
    EXPECT_EQ(outcome.verdict.what, smtp::stage_verdict::kind::reply);
    EXPECT_EQ(outcome.verdict.reply, "550 5.7.1 Message rejected");
    EXPECT_EQ(outcome.verdict.delay, std::chrono::milliseconds(200));
}

TEST(SessionRules, OrdinarySpamIsLeftAlone) {
    fixture f;
    const auto decided = f.classify("Subject: Great offer\r\n\r\nbuy now\r\n");
    EXPECT_TRUE(decided.rule.empty());
    EXPECT_TRUE(decided.folder.empty());
    EXPECT_FALSE(f.rules.after_commit(decided).relay);
}

TEST(SessionRules, ClassifierKeepsItsSnapshotAcrossAReload) {
    fixture f;
    auto classifier = f.rules.classifier(f.facts, {}, 10);
    f.store.install(rules::rule_set::parse("", "empty.toml", {}));  // reload between DATA end and the reply
    const auto decided = classifier.classify("Subject: Relay test 198.51.100.25\r\n\r\nx\r\n", false);
    EXPECT_EQ(decided.rule, "probe-ip-in-subject");
    EXPECT_TRUE(f.rules.after_commit(decided).relay);
}

// The operator's view of rules::dynamic_values_left_out(): a warning when the count grew, at
// once the first time, then at most once per period, with the total and the growth.
TEST(SessionRules, LeftOutReportWarnsAtOnceThenAtMostOncePerPeriod) {
    left_out_report report(std::chrono::minutes(10));
    const auto t0 = left_out_report::clock::now();
    EXPECT_FALSE(report.due(0, t0));  // nothing left out: nothing to say
    const auto first = report.due(3, t0);
    ASSERT_TRUE(first);
    EXPECT_NE(first->find("rules: 3 comparisons since start left session values out at their bounds (3 since the last"),
              std::string::npos)
        << *first;
    EXPECT_NE(first->find("16384 needles and 512 KiB"), std::string::npos) << *first;
    EXPECT_FALSE(report.due(5, t0 + std::chrono::minutes(1)));  // within the period: quiet
    EXPECT_FALSE(report.due(3, t0 + std::chrono::minutes(11)));  // no growth since the warning: quiet
    const auto second = report.due(5, t0 + std::chrono::minutes(12));
    ASSERT_TRUE(second);
    EXPECT_NE(second->find("rules: 5 comparisons since start left session values out at their bounds (2 since the last"),
              std::string::npos)
        << *second;
}

using net_test::log_capture;

// A message whose recipients' encoded forms pass the bounds of one comparison: the classifier
// (on a store thread in serve) leaves the last ones out, and the server log says so, once.
TEST(SessionRules, SessionValuesLeftOutAtTheBoundsAreReportedInTheServerLog) {
    rules::rule_store store{"", {}};
    store.install(rules::rule_set::parse(R"toml(
[[rule]]
name = "names-a-recipient"
kind = "probe"
when = "body contains encoded($rcpt_to)"
[rule.actions]
tags = ["self-addressed"]
)toml", "test.toml", {}));
    left_out_report report(std::chrono::hours(1));
    session_rules rules(store, 1 << 20, {}, report);
    smtp::connection_facts facts;
    facts.peer_ip = "203.0.113.9";
    smtp::envelope env;
    const auto recipient = [](int i) { return std::to_string(1000 + i) + std::string(rules::max_dynamic_value_bytes - 4, 'x'); };
    for (int i = 0; i < 40; ++i) env.recipients.push_back({recipient(i), ""});
    const std::string message = "Subject: hi\r\n\r\nto " + recipient(39) + "\r\n";
    log_capture log;
    const auto before = rules::dynamic_values_left_out();
    EXPECT_TRUE(rules.classifier(facts, env, message.size()).classify(message, false).rule.empty());  // not looked for
    EXPECT_GT(rules::dynamic_values_left_out(), before);
    EXPECT_NE(log.text().find("warning rules: "), std::string::npos) << log.text();
    EXPECT_NE(log.text().find("left session values out at their bounds"), std::string::npos) << log.text();
    const auto logged = log.text();
    rules.classifier(facts, env, message.size()).classify(message, false);
    EXPECT_EQ(log.text(), logged);  // at most one warning per period
}

}  // namespace
}  // namespace relaybait::net
