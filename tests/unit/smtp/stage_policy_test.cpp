// The stage policy hook: what the rule engine can do to EHLO, AUTH, MAIL and RCPT.
#include <gtest/gtest.h>

#include "test_support.hpp"

namespace relaybait::smtp {
namespace {

using testing::driver;

// Answers from a table keyed by stage and argument; records every question.
struct scripted_policy : stage_policy {
    struct rule {
        stage at;
        std::string argument;
        stage_verdict verdict;
    };
    std::vector<rule> rules;
    std::vector<std::string> asked;

    stage_verdict decide(stage at, const connection_facts&, const envelope& env, const std::optional<credential>& auth,
                         std::string_view argument) override {
        asked.push_back(std::string(to_string(at)) + ":" + std::string(argument) + (auth ? ":auth=" + auth->username : "") +
                        (at == stage::rcpt ? ":from=" + env.mail_from : ""));
        for (const auto& r : rules)
            if (r.at == at && r.argument == argument) return r.verdict;
        return {};
    }
};

struct policy_driver {
    scripted_policy policy;
    std::unique_ptr<driver> d;
    explicit policy_driver(listener_kind kind = listener_kind::smtp) {
        d = std::make_unique<driver>(kind);
        d->eng->set_policy(&policy);
        d->eng->greeting();
    }
};

stage_verdict refuse(std::string text) { return {stage_verdict::kind::reply, std::move(text), {}}; }

TEST(StagePolicy, EveryStageIsAskedWithItsArgument) {
    policy_driver p;
    p.d->send("EHLO spam.example\r\nAUTH PLAIN AHVzZXIAcGFzcw==\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n");
    EXPECT_EQ(p.policy.asked, (std::vector<std::string>{"ehlo:spam.example", "auth:user:auth=user", "mail:a@example.org:auth=user",
                                                         "rcpt:b@example.com:auth=user:from=a@example.org"}));
}

TEST(StagePolicy, RefusedRecipientIsNotAddedAndCountsAsAnError) {
    policy_driver p;
    p.policy.rules.push_back({stage::rcpt, "bad@example.com", refuse("550 5.7.1 <bad@example.com>: Recipient address rejected: Access denied")});
    const auto text = p.d->send("MAIL FROM:<a@example.org>\r\nRCPT TO:<bad@example.com>\r\nRCPT TO:<good@example.com>\r\n");
    EXPECT_EQ(text, "250 2.1.0 Ok\r\n550 5.7.1 <bad@example.com>: Recipient address rejected: Access denied\r\n250 2.1.5 Ok\r\n");
    EXPECT_EQ(p.d->eng->current_envelope().recipients.size(), 1u);
    EXPECT_EQ(p.d->eng->current_envelope().recipients[0].address, "good@example.com");
    EXPECT_EQ(p.d->eng->errors(), 1u);
}

TEST(StagePolicy, TemporaryFailureAtMailLeavesNoTransaction) {
    policy_driver p;
    p.policy.rules.push_back({stage::mail, "a@example.org", refuse("451 4.3.0 Error: queue file write error")});
    const auto text = p.d->send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n");
    EXPECT_EQ(text, "451 4.3.0 Error: queue file write error\r\n503 5.5.1 Error: need MAIL command\r\n");
}

TEST(StagePolicy, SuccessRepliesDoNotChangeTheProtocol) {
    policy_driver p;
    p.policy.rules.push_back({stage::mail, "a@example.org", refuse("250 whatever")});
    EXPECT_EQ(p.d->send("MAIL FROM:<a@example.org>\r\n"), "250 2.1.0 Ok\r\n");
}

TEST(StagePolicy, DisconnectAnswersAndCloses) {
    policy_driver p;
    p.policy.rules.push_back({stage::ehlo, "scanner.example", {stage_verdict::kind::disconnect, "421 4.7.0 mx1.example.net Error: too many connections", {}}});
    const auto text = p.d->send("EHLO scanner.example\r\nNOOP\r\n");
    EXPECT_EQ(text, "421 4.7.0 mx1.example.net Error: too many connections\r\n");
    EXPECT_TRUE(p.d->closed);
}

TEST(StagePolicy, TarpitDelaysOnlyThatReply) {
    policy_driver p;
    p.policy.rules.push_back({stage::ehlo, "slow.example", {stage_verdict::kind::proceed, "", std::chrono::milliseconds(1500)}});
    p.d->send("EHLO slow.example\r\nNOOP\r\n");
    ASSERT_GE(p.d->all_replies.size(), 2u);
    const auto n = p.d->all_replies.size();
    EXPECT_EQ(p.d->all_replies[n - 2].delay_before, std::chrono::milliseconds(1500));
    EXPECT_EQ(p.d->all_replies[n - 1].delay_before, std::chrono::milliseconds(0));
}

TEST(StagePolicy, RefusedAuthIsCapturedAsNotAccepted) {
    policy_driver p;
    p.policy.rules.push_back({stage::auth, "admin", refuse("535 5.7.8 Error: authentication failed: authentication failure")});
    const auto text = p.d->send("EHLO x.example\r\nAUTH PLAIN AGFkbWluAHNlY3JldA==\r\nMAIL FROM:<a@example.org>\r\n");
    EXPECT_NE(text.find("535 5.7.8 Error: authentication failed: authentication failure\r\n"), std::string::npos);
    ASSERT_EQ(p.d->eng->credentials().size(), 1u);
    EXPECT_FALSE(p.d->eng->credentials()[0].accepted);
    EXPECT_EQ(p.d->eng->credentials()[0].password, "secret");
    EXPECT_FALSE(p.d->eng->current_envelope().auth.has_value());
}

TEST(StagePolicy, DataEndVerdictReplacesTheQueuedReply) {
    policy_driver p;
    p.d->data_verdict = refuse("550 5.7.1 Message rejected");
    const auto text = p.d->send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nhi\r\n.\r\nMAIL FROM:<c@example.org>\r\n");
    EXPECT_EQ(text, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n550 5.7.1 Message rejected\r\n250 2.1.0 Ok\r\n");
    EXPECT_EQ(p.d->eng->errors(), 1u);
    EXPECT_EQ(p.d->eng->messages_accepted(), 1u);  // stored all the same
}

TEST(StagePolicy, DataEndProceedWithTarpitDelaysTheQueuedReply) {
    policy_driver p;
    p.d->data_verdict = stage_verdict{stage_verdict::kind::proceed, "", std::chrono::milliseconds(700)};
    const auto text = p.d->send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nhi\r\n.\r\n");
    EXPECT_NE(text.find("250 2.0.0 Ok: queued as"), std::string::npos);
    EXPECT_EQ(p.d->all_replies.back().delay_before, std::chrono::milliseconds(700));
    EXPECT_EQ(p.d->eng->errors(), 0u);
}

TEST(StagePolicy, DataEndDisconnectAnswersThenCloses) {
    policy_driver p;
    p.d->data_verdict = stage_verdict{stage_verdict::kind::disconnect, "421 4.7.0 mx1.example.net Error: closing", {}};
    const auto text = p.d->send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nhi\r\n.\r\nNOOP\r\n");
    EXPECT_TRUE(text.ends_with("421 4.7.0 mx1.example.net Error: closing\r\n"));
    EXPECT_TRUE(p.d->closed);
}

TEST(StagePolicy, SetPolicyReplacesThePreviousOneAndNullptrRemovesIt) {
    policy_driver p;
    scripted_policy other;
    other.rules.push_back({stage::mail, "a@example.org", refuse("451 4.7.1 Try again later")});
    p.d->eng->set_policy(&other);
    EXPECT_EQ(p.d->send("MAIL FROM:<a@example.org>\r\n"), "451 4.7.1 Try again later\r\n");
    EXPECT_TRUE(p.policy.asked.empty());
    EXPECT_EQ(other.asked.size(), 1u);
    p.d->eng->set_policy(nullptr);  // no policy: every stage proceeds
    EXPECT_EQ(p.d->send("MAIL FROM:<a@example.org>\r\n"), "250 2.1.0 Ok\r\n");
    EXPECT_EQ(other.asked.size(), 1u);
}

}  // namespace
}  // namespace relaybait::smtp
