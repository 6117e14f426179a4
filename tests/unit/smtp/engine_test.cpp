#include "smtp/engine.hpp"

#include <gtest/gtest.h>

#include "smtp/persona.hpp"
#include "smtp/syntax.hpp"
#include "test_support.hpp"

namespace relaybait::smtp {
namespace {

using testing::driver;

const std::string kEhloPlain =
    "250-mx1.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n"
    "250-AUTH PLAIN LOGIN CRAM-MD5\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
    "250 CHUNKING\r\n";

std::string transaction() { return "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"; }
const std::string kTxnReplies = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n";

TEST(Engine, BannerAndPersona) {
    driver d;
    EXPECT_EQ(d.eng->greeting(), "220 mx1.example.net ESMTP Postfix\r\n");
    EXPECT_EQ(d.eng->timeout_reply(), "421 4.4.2 mx1.example.net Error: timeout exceeded\r\n");
    EXPECT_EQ(d.eng->busy_reply(), "421 4.7.0 mx1.example.net Error: too many connections from 192.0.2.1\r\n");
    EXPECT_EQ(persona::find("postfix-3.7"), &persona::postfix_3_7());
    EXPECT_EQ(persona::find("exim"), nullptr);
    EXPECT_EQ(to_string(listener_kind::submission), "submission");
}

TEST(Engine, EhloAndCaseInsensitivity) {
    driver d;
    EXPECT_EQ(d.send("eHlO client.example\r\n"), kEhloPlain);
    EXPECT_EQ(d.eng->current_envelope().helo_name, "client.example");
    EXPECT_EQ(d.eng->current_envelope().helo_verb, "EHLO");
    EXPECT_EQ(d.send("HELO\r\n"), "501 Syntax: HELO hostname\r\n");
}

TEST(Engine, LineEndings) {
    driver d;
    EXPECT_EQ(d.send("NOOP\nNOOP\r\n"), "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
    EXPECT_EQ(d.send("NOOP\r"), "");   // bare CR is not an end of line
    EXPECT_EQ(d.send("QUIT\r\n"), "250 2.0.0 Ok\r\n");  // "NOOP\rQUIT"
    EXPECT_FALSE(d.closed);
    EXPECT_EQ(d.send(std::string("NOOP\0junk\r\n", 11)), "250 2.0.0 Ok\r\n");
    EXPECT_EQ(d.send("\r\n \r\n"), "500 5.5.2 Error: bad syntax\r\n500 5.5.2 Error: bad syntax\r\n");
    EXPECT_EQ(d.send("NO\xffOP\r\n"), "500 5.5.2 Error: bad UTF-8 syntax\r\n");
    EXPECT_EQ(d.eng->errors(), 3u);
}

TEST(Engine, LongLineIsCutAndRestSkipped) {
    driver d;
    std::string line = "NOOP " + std::string(5000, 'x') + " QUIT\r\n";
    EXPECT_EQ(d.send(line), "250 2.0.0 Ok\r\n");
    EXPECT_FALSE(d.closed);  // the tail was skipped, not treated as a command
    std::string mail = "MAIL FROM:<" + std::string(3000, 'a') + "@example.org>\r\n";
    EXPECT_EQ(d.send_bytewise(mail), "501 5.1.7 Bad sender address syntax\r\n");
    for (const auto& o : d.observations) {
        if (o.what == observation::kind::command) {
            EXPECT_LE(o.text.size(), 2048u);
        }
    }
}

TEST(Engine, ForbiddenCommandsClose) {
    for (std::string probe : {"GET / HTTP/1.0\r\n", "post / HTTP/1.1\r\n", "CONNECT a:25 HTTP/1.0\r\n", "Host: x\r\n",
                              "*\r\n", "1234\r\n", ".\r\n"}) {
        driver d;
        EXPECT_EQ(d.send(probe + "NOOP\r\n"), "221 2.7.0 Error: I can break rules, too. Goodbye.\r\n") << probe;
        EXPECT_TRUE(d.closed);
    }
    driver d;
    d.send("GET / HTTP/1.0\r\n");
    bool probe = false;
    for (const auto& o : d.observations) probe |= o.what == observation::kind::http_probe;
    EXPECT_TRUE(probe);
}

TEST(Engine, UnknownAndSpecialCommands) {
    driver d;
    EXPECT_EQ(d.send("HELP\r\nEXPN root\r\nTURN\r\n"),
              "500 5.5.2 Error: command not recognized\r\n500 5.5.2 Error: command not recognized\r\n"
              "500 5.5.2 Error: command not recognized\r\n");
    EXPECT_EQ(d.send("XCLIENT ADDR=1.2.3.4\r\n"), "550 5.7.0 Error: insufficient authorization\r\n");
    EXPECT_EQ(d.send("ETRN\r\n"), "500 Syntax: ETRN domain\r\n");
    EXPECT_EQ(d.send("ETRN #example.com\r\n"), "459 <example.com>: service unavailable\r\n");
    EXPECT_EQ(d.send("ETRN -bad-\r\n"), "501 Error: invalid parameter syntax\r\n");
}

TEST(Engine, VrfyLocalUsers) {
    driver d;
    EXPECT_EQ(d.send("VRFY root\r\n"), "252 2.0.0 root\r\n");
    EXPECT_EQ(d.send("VRFY WebMaster@localhost\r\n"), "252 2.0.0 WebMaster@localhost\r\n");
    EXPECT_EQ(d.send("VRFY nobody-here\r\n"),
              "550 5.1.1 <nobody-here>: Recipient address rejected: User unknown in local recipient table\r\n");
    EXPECT_EQ(d.send("VRFY a@remote.example\r\n"), "252 2.0.0 a@remote.example\r\n");
    EXPECT_EQ(d.send("VRFY\r\n"), "501 5.5.4 Syntax: VRFY address [SMTPUTF8]\r\n");

    engine_config cfg;
    cfg.local_users = {"alice"};
    driver custom(listener_kind::smtp, cfg);
    EXPECT_EQ(custom.send("VRFY alice\r\n"), "252 2.0.0 alice\r\n");
    EXPECT_EQ(custom.send("VRFY root\r\n"),
              "550 5.1.1 <root>: Recipient address rejected: User unknown in local recipient table\r\n");
}

TEST(Engine, MailParameters) {
    driver d;
    auto mail = [&](const std::string& params) {
        std::string r = d.send("MAIL FROM:<a@example.org>" + params + "\r\n");
        d.send("RSET\r\n");
        return r;
    };
    EXPECT_EQ(mail(""), "250 2.1.0 Ok\r\n");
    EXPECT_EQ(mail(" SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=abc+2B AUTH=<>"), "250 2.1.0 Ok\r\n");
    EXPECT_EQ(mail(" SIZE=99999999999"), "552 5.3.4 Message size exceeds fixed limit\r\n");
    EXPECT_EQ(mail(" SIZE=99999999999999999999999"), "552 5.3.4 Message size exceeds file system imposed limit\r\n");
    EXPECT_EQ(mail(" SIZE=abc"), "501 5.5.4 Bad message size syntax\r\n");
    EXPECT_EQ(mail(" RET=NONE"), "501 5.5.4 Bad RET parameter syntax\r\n");
    EXPECT_EQ(mail(" ENVID=a+zz"), "501 5.5.4 Bad ENVID parameter syntax\r\n");
    EXPECT_EQ(mail(" BODY=BINARYMIME"), "555 5.5.4 Unsupported option: BODY=BINARYMIME\r\n");
    // Postfix 3.7 takes an 8-bit local part without SMTPUTF8 (only an 8-bit domain is bad syntax).
    EXPECT_EQ(d.send("MAIL FROM:<\xc3\xbc@b\xc3\xbc.example>\r\n"), "501 5.1.7 Bad sender address syntax\r\n");
    EXPECT_EQ(d.send("MAIL FROM:<\xc3\xbc@example.org>\r\nRSET\r\n"), "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n");
    EXPECT_EQ(d.send("MAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\n"),
              "250 2.1.0 Ok\r\n503 5.5.1 Error: nested MAIL command\r\n");
    EXPECT_EQ(d.eng->current_envelope().mail_from, "a@b.example");
}

TEST(Engine, RcptParametersAndRecipients) {
    driver d;
    d.send("MAIL FROM:<>\r\n");
    EXPECT_EQ(d.send("RCPT TO:<x@example.com> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x@example.com\r\n"), "250 2.1.5 Ok\r\n");
    EXPECT_EQ(d.send("RCPT TO:<x@example.com> NOTIFY=NEVER,SUCCESS\r\n"), "501 5.5.4 Error: Bad NOTIFY parameter syntax\r\n");
    EXPECT_EQ(d.send("RCPT TO:<x@example.com> ORCPT=nosemicolon\r\n"), "501 5.5.4 Error: Bad ORCPT parameter syntax\r\n");
    EXPECT_EQ(d.send("RCPT TO:<x@example.com> FOO=1\r\n"), "555 5.5.4 Unsupported option: FOO=1\r\n");
    EXPECT_EQ(d.send("RCPT TO:<>\r\n"), "501 5.1.3 Bad recipient address syntax\r\n");
    EXPECT_EQ(d.send("RCPT TO:<nosuch@localhost>\r\n"),
              "550 5.1.1 <nosuch@localhost>: Recipient address rejected: User unknown in local recipient table\r\n");
    EXPECT_EQ(d.send("RCPT TO:<nosuch%remote.example@mx1.example.net>\r\n"), "250 2.1.5 Ok\r\n");
    const auto& env = d.eng->current_envelope();
    ASSERT_EQ(env.recipients.size(), 2u);
    EXPECT_EQ(env.recipients[0].parameters, "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x@example.com");
}

TEST(Engine, RecipientLimit) {
    engine_config cfg;
    cfg.bounds.recipients_per_message = 3;
    driver d(listener_kind::smtp, cfg);
    d.send("MAIL FROM:<a@example.org>\r\n");
    for (int i = 0; i < 3; ++i) EXPECT_EQ(d.send("RCPT TO:<r@example.com>\r\n"), "250 2.1.5 Ok\r\n");
    EXPECT_EQ(d.send("RCPT TO:<r@example.com>\r\n"), "452 4.5.3 Error: too many recipients\r\n");
    EXPECT_EQ(d.eng->errors(), 0u);  // within smtpd_recipient_overshoot_limit
    EXPECT_EQ(d.eng->current_envelope().recipients.size(), 3u);
}

TEST(Engine, DataDotStuffingAnySplit) {
    const std::string body =
        "Subject: t\r\n\r\n..stuffed\r\n...two\r\n. \r\n..\r\n.x\r\nbare\nlf\n.\rcr\r\nlast\r\n.\r\n";
    const std::string expected = "Subject: t\r\n\r\n.stuffed\r\n..two\r\n \r\n.\r\nx\r\nbare\nlf\n\rcr\r\nlast\r\n";
    for (std::size_t split = 0; split <= body.size(); ++split) {
        driver d;
        EXPECT_EQ(d.send(transaction()), kTxnReplies);
        std::string r = d.send(body.substr(0, split));
        r += d.send(body.substr(split));
        EXPECT_EQ(r, "250 2.0.0 Ok: queued as QUEUEID\r\n") << split;
        ASSERT_EQ(d.sink.finished.size(), 1u);
        EXPECT_EQ(d.sink.finished[0], expected) << split;
    }
    driver d;
    d.send(transaction());
    EXPECT_EQ(d.send_bytewise(body), "250 2.0.0 Ok: queued as QUEUEID\r\n");
    EXPECT_EQ(d.sink.finished.at(0), expected);
    EXPECT_EQ(d.eng->messages_accepted(), 1u);
    EXPECT_FALSE(d.eng->in_message());
}

TEST(Engine, DataBareLfSmuggling) {
    driver d;
    d.send(transaction());
    EXPECT_EQ(d.send("Subject: smuggle\r\n\r\nline one\n.\nNOOP\r\n.\r\n"),
              "250 2.0.0 Ok: queued as QUEUEID\r\n250 2.0.0 Ok\r\n221 2.7.0 Error: I can break rules, too. Goodbye.\r\n");
    EXPECT_EQ(d.sink.finished.at(0), "Subject: smuggle\r\n\r\nline one\n");
}

TEST(Engine, DataStreamsIntoSinkWithoutBuffering) {
    driver d;
    d.send(transaction());
    d.send("Subject: x\r\n\r\n" + std::string(100000, 'y'));
    EXPECT_TRUE(d.sink.open);
    EXPECT_EQ(d.sink.current.size(), 100000u + 14u);
    EXPECT_TRUE(d.eng->in_message());
}

TEST(Engine, DataSizeLimit) {
    engine_config cfg;
    cfg.bounds.message_size = 100;
    driver d(listener_kind::smtp, cfg);
    d.send(transaction());
    EXPECT_EQ(d.send(std::string(300, 'z') + "\r\n.\r\nNOOP\r\n"),
              "552 5.3.4 Message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n");
    EXPECT_EQ(d.sink.discards, 1);
    EXPECT_TRUE(d.sink.finished.empty());
    EXPECT_EQ(d.eng->errors(), 1u);
}

TEST(Engine, CommitFailureAndPipelining) {
    driver d;
    output out;
    d.eng->feed(transaction() + "hello\r\n.\r\nNOOP\r\n", out);
    EXPECT_EQ(out.next, request::commit_message);
    std::string rest = (transaction() + "hello\r\n.\r\nNOOP\r\n").substr(out.consumed);
    EXPECT_EQ(rest, "NOOP\r\n");
    ASSERT_EQ(out.replies.size(), 3u);
    output again;
    d.eng->feed(rest, again);  // not allowed before the commit is answered
    EXPECT_EQ(again.consumed, 0u);
    EXPECT_EQ(again.next, request::commit_message);
    output failed;
    d.eng->message_failed(failed);
    ASSERT_EQ(failed.replies.size(), 1u);
    EXPECT_EQ(failed.replies[0].text, "451 4.3.0 Error: queue file write error\r\n");
    EXPECT_EQ(d.send(rest), "250 2.0.0 Ok\r\n");
    EXPECT_EQ(d.eng->messages_accepted(), 0u);
}

TEST(Engine, DataErrors) {
    driver d;
    EXPECT_EQ(d.send("DATA\r\n"), "503 5.5.1 Error: need RCPT command\r\n");
    d.send("MAIL FROM:<a@example.org>\r\n");
    EXPECT_EQ(d.send("DATA\r\n"), "554 5.5.1 Error: no valid recipients\r\n");
    d.send("RCPT TO:<b@example.com>\r\n");
    EXPECT_EQ(d.send("DATA x\r\n"), "501 5.5.4 Syntax: DATA\r\n");
}

TEST(Engine, Bdat) {
    driver d;
    d.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n");
    EXPECT_EQ(d.send_bytewise("BDAT 12\r\nSubject: x\r\n"), "250 2.0.0 Ok: 12 bytes\r\n");
    EXPECT_TRUE(d.eng->in_message());
    EXPECT_EQ(d.send("BDAT 0\r\nBDAT 9 LAST\r\n\r\n.body\r\nNOOP\r\n"),
              "250 2.0.0 Ok: 12 bytes\r\n250 2.0.0 Ok: 21 bytes queued as QUEUEID\r\n250 2.0.0 Ok\r\n");
    EXPECT_EQ(d.sink.finished.at(0), "Subject: x\r\n\r\n.body\r\n");  // no unstuffing in BDAT
    EXPECT_TRUE(d.sink.last_envelope.via_bdat);
}

TEST(Engine, BdatErrors) {
    driver d;
    EXPECT_EQ(d.send("BDAT 5 LAST\r\nhelloNOOP\r\n"), "503 5.5.1 Error: need RCPT command\r\n250 2.0.0 Ok\r\n");
    d.send("MAIL FROM:<a@example.org>\r\n");
    EXPECT_EQ(d.send("BDAT 3\r\nabcBDAT 2\r\nxyBDAT 1 LAST\r\nz"),
              "554 5.5.1 Error: no valid recipients\r\n551 5.0.0 Discarded 2 bytes after earlier error\r\n"
              "551 5.0.0 Discarded 1 bytes after earlier error\r\n");
    for (std::string bad : {"BDAT\r\n", "BDAT abc LAST\r\n", "BDAT -1\r\n", "BDAT 1 FIRST\r\n", "BDAT 99999999999999999999\r\n"}) {
        driver e;
        EXPECT_EQ(e.send(bad + "NOOP\r\n"), "521 5.5.4 Syntax: BDAT count [LAST]\r\n") << bad;
        EXPECT_TRUE(e.closed);
    }
    engine_config cfg;
    cfg.bounds.message_size = 10;
    driver s(listener_kind::smtp, cfg);
    s.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n");
    EXPECT_EQ(s.send("BDAT 20\r\n01234567890123456789BDAT 1 LAST\r\nx"),
              "552 5.3.4 Message size exceeds fixed limit\r\n551 5.0.0 Discarded 1 bytes after earlier error\r\n");
    EXPECT_TRUE(s.sink.finished.empty());
}

TEST(Engine, RsetResetsEnvelopeAndDiscardsMessage) {
    driver d;
    d.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nBDAT 3\r\nabc");
    EXPECT_TRUE(d.sink.open);
    EXPECT_EQ(d.send("RSET\r\n"), "250 2.0.0 Ok\r\n");
    EXPECT_FALSE(d.sink.open);
    EXPECT_EQ(d.sink.discards, 1);
    EXPECT_TRUE(d.eng->current_envelope().recipients.empty());
    EXPECT_EQ(d.send("RCPT TO:<b@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
    EXPECT_EQ(d.send("RSET foo\r\n"), "501 5.5.4 Syntax: RSET\r\n");
}

TEST(Engine, QuitCloses) {
    driver d;
    EXPECT_EQ(d.send("QUIT\r\nNOOP\r\n"), "221 2.0.0 Bye\r\n");
    EXPECT_TRUE(d.closed);
    output out;
    d.eng->feed("NOOP\r\n", out);
    EXPECT_EQ(out.next, request::close);
    EXPECT_TRUE(out.replies.empty());
}

TEST(Engine, StartTlsDiscardsPipelinedInput) {
    driver d;
    d.send("EHLO a\r\nMAIL FROM:<a@example.org>\r\n");
    output out;
    std::string input = "STARTTLS\r\nRSET\r\nMAIL FROM:<evil@example.org>\r\n";
    d.eng->feed(input, out);
    EXPECT_EQ(out.next, request::start_tls);
    EXPECT_EQ(out.consumed, input.size());
    ASSERT_EQ(out.replies.size(), 1u);
    EXPECT_EQ(out.replies[0].text, "220 2.0.0 Ready to start TLS\r\n");
    output tls;
    d.eng->tls_started({"TLSv1.3", "TLS_AES_256_GCM_SHA384"}, tls);
    EXPECT_TRUE(tls.replies.empty());
    EXPECT_EQ(d.eng->tls()->version, "TLSv1.3");
    EXPECT_TRUE(d.eng->current_envelope().helo_name.empty());
    EXPECT_TRUE(d.eng->current_envelope().mail_from.empty());
    std::string ehlo = d.send("EHLO a\r\n");
    EXPECT_EQ(ehlo.find("STARTTLS"), std::string::npos);
    EXPECT_EQ(d.send("STARTTLS\r\n"), "554 5.5.1 Error: TLS already active\r\n");
    driver e;
    EXPECT_EQ(e.send("STARTTLS now\r\n"), "501 5.5.4 Syntax: STARTTLS\r\n");
}

TEST(Engine, SubmissionRequiresTls) {
    driver d(listener_kind::submission);
    std::string ehlo = d.send("EHLO a\r\n");
    EXPECT_NE(ehlo.find("STARTTLS"), std::string::npos);
    EXPECT_EQ(ehlo.find("AUTH"), std::string::npos);
    for (std::string cmd : {"MAIL FROM:<a@b.c>", "RCPT TO:<a@b.c>", "AUTH PLAIN", "VRFY root", "ETRN x.y", "DATA",
                            "BDAT 1", "RSET", "XFORWARD A=1"})
        EXPECT_EQ(d.send(cmd + "\r\n"), "530 5.7.0 Must issue a STARTTLS command first\r\n") << cmd;
    EXPECT_EQ(d.send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
    d.send("STARTTLS\r\n");
    d.start_tls();
    EXPECT_NE(d.send("EHLO a\r\n").find("250-AUTH PLAIN LOGIN CRAM-MD5\r\n"), std::string::npos);
    d.send("MAIL FROM:<a@example.org>\r\n");
    EXPECT_EQ(d.send("RCPT TO:<b@example.com>\r\n"),
              "554 5.7.1 <b@example.com>: Recipient address rejected: Access denied\r\n");
    EXPECT_EQ(d.send("RCPT TO:<PostMaster>\r\n"), "250 2.1.5 Ok\r\n");
}

TEST(Engine, AuthPlainAndAuthorisedRelay) {
    driver d(listener_kind::smtps);
    EXPECT_EQ(d.send("AUTH PLAIN " + syntax::base64_encode(std::string("authz\0bob\0pw", 12)) + "\r\n"),
              "235 2.7.0 Authentication successful\r\n");
    ASSERT_EQ(d.eng->credentials().size(), 1u);
    const auto& c = d.eng->credentials()[0];
    EXPECT_EQ(c.mechanism, "PLAIN");
    EXPECT_EQ(c.authzid, "authz");
    EXPECT_EQ(c.username, "bob");
    EXPECT_EQ(c.password, "pw");
    EXPECT_TRUE(c.accepted);
    EXPECT_TRUE(d.eng->current_envelope().auth.has_value());
    EXPECT_EQ(d.send("AUTH LOGIN\r\n"), "503 5.5.1 Error: already authenticated\r\n");
    d.send("MAIL FROM:<a@example.org>\r\n");
    EXPECT_EQ(d.send("RCPT TO:<b@example.com>\r\n"), "250 2.1.5 Ok\r\n");
}

TEST(Engine, AuthFlows) {
    driver d;
    EXPECT_EQ(d.send("AUTH\r\n"), "501 5.5.4 Syntax: AUTH mechanism\r\n");
    EXPECT_EQ(d.send("AUTH GSSAPI\r\n"), "535 5.7.8 Error: authentication failed: no mechanism available\r\n");
    EXPECT_EQ(d.send("AUTH PLAIN !!!!\r\n"), "535 5.7.8 Error: authentication failed: bad protocol / cancel\r\n");
    EXPECT_EQ(d.send("AUTH PLAIN\r\n"), "334 \r\n");
    EXPECT_EQ(d.send("*\r\n"), "501 5.7.0 Authentication aborted\r\n");
    EXPECT_EQ(d.send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    EXPECT_EQ(d.send("YWxpY2U=\r\n"), "334 UGFzc3dvcmQ6\r\n");
    EXPECT_EQ(d.send_bytewise("c2VjcmV0\r\n"), "235 2.7.0 Authentication successful\r\n");
    const auto& c = d.eng->credentials().back();
    EXPECT_EQ(c.username, "alice");
    EXPECT_EQ(c.password, "secret");
    EXPECT_EQ(c.raw, "YWxpY2U= c2VjcmV0");
    EXPECT_EQ(d.eng->credentials().size(), 4u);  // a bare "AUTH" is not an attempt
    EXPECT_EQ(d.eng->errors(), 4u);  // AUTH syntax, no mechanism, bad base64, aborted
    driver m;
    m.send("MAIL FROM:<a@example.org>\r\n");
    EXPECT_EQ(m.send("AUTH PLAIN\r\n"), "503 5.5.1 Error: MAIL transaction in progress\r\n");
}

TEST(Engine, AuthCramMd5) {
    engine_config cfg;
    cfg.auth.policy = auth_policy::mode::accept_listed;
    cfg.auth.accepted_pairs = {{"tim", "tanstaaftanstaaf"}};
    driver d(listener_kind::smtp, cfg);
    std::string r = d.send("AUTH CRAM-MD5\r\n");
    ASSERT_EQ(r.substr(0, 4), "334 ");
    auto challenge = syntax::base64_decode(r.substr(4, r.size() - 6));
    ASSERT_TRUE(challenge);
    EXPECT_EQ(*challenge, "<2735524914." + std::to_string(1700000000 % 0xFFFFFF) + "@mx1.example.net>");
    std::string wrong = syntax::base64_encode("tim 0123456789abcdef0123456789abcdef");
    EXPECT_EQ(d.send(wrong + "\r\n"), "535 5.7.8 Error: authentication failed: authentication failure\r\n");
    r = d.send("AUTH CRAM-MD5\r\n");
    challenge = syntax::base64_decode(r.substr(4, r.size() - 6));
    std::string right = syntax::base64_encode("tim " + syntax::hmac_md5_hex("tanstaaftanstaaf", *challenge));
    EXPECT_EQ(d.send(right + "\r\n"), "235 2.7.0 Authentication successful\r\n");
    EXPECT_EQ(d.eng->credentials().back().challenge, *challenge);
}

TEST(Engine, AuthPolicies) {
    auto attempt = [](driver& d) {
        return d.send("AUTH PLAIN " + syntax::base64_encode(std::string("\0u\0p", 4)) + "\r\n");
    };
    engine_config reject;
    reject.auth.policy = auth_policy::mode::reject_all;
    driver r(listener_kind::smtp, reject);
    EXPECT_EQ(attempt(r), "535 5.7.8 Error: authentication failed: authentication failure\r\n");
    EXPECT_FALSE(r.eng->credentials().back().accepted);

    engine_config after;
    after.auth.policy = auth_policy::mode::accept_after_failures;
    after.auth.failures_before_accept = 2;
    driver a(listener_kind::smtp, after);
    EXPECT_EQ(attempt(a), "535 5.7.8 Error: authentication failed: authentication failure\r\n");
    EXPECT_EQ(attempt(a), "535 5.7.8 Error: authentication failed: authentication failure\r\n");
    EXPECT_EQ(attempt(a), "235 2.7.0 Authentication successful\r\n");

    engine_config listed;
    listed.auth.policy = auth_policy::mode::accept_listed;
    listed.auth.accepted_pairs = {{"u", "p"}};
    driver l(listener_kind::smtp, listed);
    EXPECT_EQ(attempt(l), "235 2.7.0 Authentication successful\r\n");
    bool observed = false;
    for (const auto& o : l.observations) observed |= o.what == observation::kind::auth && o.text == "PLAIN u";
    EXPECT_TRUE(observed);
}

TEST(Engine, ErrorLimitsAndDelays) {
    driver d;
    for (int i = 1; i <= 20; ++i) {
        std::string r = d.send("FOO" + std::to_string(i) + "\r\n");
        EXPECT_EQ(r, "500 5.5.2 Error: command not recognized\r\n");
        auto delay = d.all_replies.back().delay_before;
        EXPECT_EQ(delay.count(), i >= 11 ? 1000 : 0) << i;
    }
    EXPECT_EQ(d.send("NOOP\r\n"), "421 4.7.0 mx1.example.net Error: too many errors\r\n");
    EXPECT_EQ(d.all_replies.back().delay_before.count(), 1000);
    EXPECT_TRUE(d.closed);
}

TEST(Engine, FailedAuthCountsAsError) {
    engine_config cfg;
    cfg.auth.policy = auth_policy::mode::reject_all;
    driver d(listener_kind::smtp, cfg);
    for (int i = 0; i < 12; ++i) d.send("AUTH PLAIN AGEAYg==\r\n");
    EXPECT_EQ(d.eng->errors(), 12u);
    EXPECT_EQ(d.all_replies[10].delay_before.count(), 1000);
    EXPECT_EQ(d.all_replies[9].delay_before.count(), 0);
}

TEST(Engine, JunkCommandLimit) {
    driver d;
    for (int i = 0; i < 102; ++i) d.send("NOOP\r\n");
    EXPECT_EQ(d.eng->errors(), 1u);  // the 102nd junk command is past smtpd_junk_command_limit
}

TEST(Engine, SessionLimits) {
    engine_config cfg;
    cfg.bounds.commands_per_session = 3;
    driver d(listener_kind::smtp, cfg);
    EXPECT_EQ(d.send("NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n"),
              "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n421 4.7.0 mx1.example.net Error: too many requests from 192.0.2.1\r\n");
    EXPECT_TRUE(d.closed);

    engine_config mcfg;
    mcfg.bounds.messages_per_session = 1;
    driver m(listener_kind::smtp, mcfg);
    m.send(transaction() + "x\r\n.\r\n");
    EXPECT_EQ(m.send("MAIL FROM:<a@example.org>\r\n"), "421 4.7.0 mx1.example.net Error: too much mail from 192.0.2.1\r\n");
    EXPECT_TRUE(m.closed);
    bool hit = false;
    for (const auto& o : m.observations) hit |= o.what == observation::kind::limit_hit && o.text == "messages_per_session";
    EXPECT_TRUE(hit);
}

TEST(Engine, ObservationsAndCounters) {
    driver d;
    std::string input = "EHLO c.example\r\n" + transaction() + "x\r\n.\r\n";
    d.send(input);
    std::vector<observation::kind> kinds;
    for (const auto& o : d.observations) kinds.push_back(o.what);
    auto has = [&](observation::kind k) { return std::find(kinds.begin(), kinds.end(), k) != kinds.end(); };
    EXPECT_TRUE(has(observation::kind::command));
    EXPECT_TRUE(has(observation::kind::helo));
    EXPECT_TRUE(has(observation::kind::mail_from));
    EXPECT_TRUE(has(observation::kind::rcpt_to));
    EXPECT_TRUE(has(observation::kind::message_begin));
    EXPECT_EQ(d.eng->bytes_received(), input.size());
}

TEST(Engine, DestructionDiscardsOpenMessage) {
    testing::recording_sink sink;
    testing::fixed_environment env;
    engine_config cfg;
    connection_facts f;
    f.local_hostname = "mx1.example.net";
    {
        engine e(cfg, f, sink, env);
        output out;
        e.feed(transaction() + "partial", out);
        EXPECT_TRUE(sink.open);
    }
    EXPECT_EQ(sink.discards, 1);
}

}  // namespace
}  // namespace relaybait::smtp
