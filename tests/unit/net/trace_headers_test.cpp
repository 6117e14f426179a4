#include "net/trace_headers.hpp"

#include <gtest/gtest.h>

namespace relaybait::net {
namespace {

struct trace_headers_fixture : ::testing::Test {
    smtp::connection_facts connection{smtp::listener_kind::smtp, "mx1.example.net", "203.0.113.9", 40000,
                                      "192.0.2.1", 25, false};
    smtp::envelope envelope;
    std::chrono::system_clock::time_point at = std::chrono::system_clock::time_point(std::chrono::seconds(1'795'457'223));

    void SetUp() override {
        envelope.helo_verb = "EHLO";
        envelope.helo_name = "spammer.example";
        envelope.mail_from = "alice@example.org";
        envelope.recipients.push_back({"victim@example.com", ""});
    }
    std::string headers(std::optional<smtp::tls_facts> tls = std::nullopt) {
        return make_trace_headers(trace_facts{connection, envelope, tls, "218CBA72013", "0123456789abcdef", at});
    }
};

TEST_F(trace_headers_fixture, received_line_in_postfix_form) {
    const auto text = headers();
    EXPECT_EQ(text.find("Received: from spammer.example (unknown [203.0.113.9])\r\n"
                        "\tby mx1.example.net (Postfix) with ESMTP id 218CBA72013\r\n"
                        "\tfor <victim@example.com>; "),
              0u)
        << text;
    EXPECT_NE(text.find("+0000 (UTC)\r\n"), std::string::npos);
}

TEST_F(trace_headers_fixture, several_recipients_fold_the_date_like_postfix) {
    envelope.recipients.push_back({"second@example.net", ""});
    const auto text = headers();
    EXPECT_NE(text.find("\tby mx1.example.net (Postfix) with ESMTP id 218CBA72013;\r\n\t"), std::string::npos) << text;
    EXPECT_EQ(text.find("\r\n;"), std::string::npos);
    EXPECT_NE(text.find("X-Relaybait-Rcpt-To: <victim@example.com>, <second@example.net>\r\n"), std::string::npos);
}

TEST_F(trace_headers_fixture, tls_details_in_received_and_protocol_esmtps) {
    const auto text = headers(smtp::tls_facts{"TLSv1.3", "TLS_AES_256_GCM_SHA384"});
    EXPECT_NE(text.find("(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))"), std::string::npos) << text;
    EXPECT_NE(text.find("with ESMTPS id"), std::string::npos);
    EXPECT_NE(text.find("X-Relaybait-TLS: TLSv1.3 TLS_AES_256_GCM_SHA384\r\n"), std::string::npos);
}

TEST_F(trace_headers_fixture, authenticated_sessions_are_esmtpa_and_name_the_user) {
    smtp::credential auth;
    auth.username = "admin";
    auth.accepted = true;
    envelope.auth = auth;
    const auto text = headers();
    EXPECT_NE(text.find("with ESMTPA id"), std::string::npos);
    EXPECT_NE(text.find("X-Relaybait-Auth-User: admin\r\n"), std::string::npos);
}

TEST_F(trace_headers_fixture, session_facts_come_from_the_connection) {
    const auto text = headers();
    EXPECT_NE(text.find("X-Relaybait-Peer: 203.0.113.9:40000\r\n"), std::string::npos);
    EXPECT_NE(text.find("X-Relaybait-Session: 0123456789abcdef\r\n"), std::string::npos);
    EXPECT_NE(text.find("X-Relaybait-Mail-From: <alice@example.org>\r\n"), std::string::npos);
    EXPECT_NE(text.find("X-Relaybait-Rcpt-To: <victim@example.com>\r\n"), std::string::npos);
    EXPECT_NE(text.find("X-Relaybait-Listener: smtp\r\n"), std::string::npos);
}

TEST_F(trace_headers_fixture, attacker_bytes_cannot_inject_header_lines) {
    envelope.helo_name = "evil\r\nX-Injected: yes";
    envelope.mail_from = std::string("a\rb\nc\0d", 7);
    const auto text = headers();
    EXPECT_EQ(text.find("\r\nX-Injected"), std::string::npos);
    // Every line ends in CRLF and no bare CR or LF is left inside.
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n') {
            ASSERT_GT(i, 0u);
            EXPECT_EQ(text[i - 1], '\r');
        }
        if (text[i] == '\r') {
            ASSERT_LT(i + 1, text.size());
            EXPECT_EQ(text[i + 1], '\n');
        }
        EXPECT_NE(text[i], '\0');
    }
}

TEST_F(trace_headers_fixture, strip_gives_back_the_message_as_received) {
    const std::string original = "Received: from elsewhere\r\nSubject: hi\r\n\r\nbody\r\n";
    for (auto tls : {std::optional<smtp::tls_facts>{}, std::optional<smtp::tls_facts>{{"TLSv1.3", "TLS_AES_256_GCM_SHA384"}}}) {
        EXPECT_EQ(store::strip_trace_block(headers(tls) + original), original);
    }
    EXPECT_EQ(store::strip_trace_block(original), original);  // no trace block: unchanged
    EXPECT_EQ(store::strip_trace_block("Received: from x\r\nX-Relaybait-Session: 1"), "Received: from x\r\nX-Relaybait-Session: 1");
}

TEST(rfc5322_date, postfix_format) {
    const auto at = std::chrono::system_clock::time_point(std::chrono::seconds(1'704'067'200));  // 2024-01-01
    EXPECT_EQ(rfc5322_date(at), "Mon, 01 Jan 2024 00:00:00 +0000 (UTC)");
}

}  // namespace
}  // namespace relaybait::net
