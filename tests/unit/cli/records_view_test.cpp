#include "cli/records_view.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <sstream>

namespace relaybait::cli {
namespace {

store::message_record sample_message() {
    store::message_record m;
    m.id = 42;
    m.queue_id = "4F9D21A0B3";
    m.session_id = "0123456789abcdef";
    m.received_at = "2026-11-23T18:07:03.123456Z";
    m.peer_ip = "203.0.113.9";
    m.peer_port = 51234;
    m.listener = "smtp";
    m.helo_name = "spammer.example";
    m.mail_from = "x@spam.example";
    m.recipients = {"a@victim.example", "b@victim.example"};
    m.size = 1234;
    m.maildir_path = "maildir/new/1.M1P1.mail";
    m.headers.subject = "Win \x1b[31mbig\xff";
    return m;
}

store::session_record sample_session() {
    store::session_record s;
    s.id = "0123456789abcdef";
    s.listener = "submission";
    s.peer_ip = "2001:db8::1";
    s.peer_port = 40000;
    s.started_at = "2026-11-23T18:07:03.000001Z";
    s.helo_verb = "EHLO";
    s.helo_name = "x";
    s.tls_version = "TLSv1.3";
    s.tls_cipher = "TLS_AES_256_GCM_SHA384";
    s.commands = 3;
    s.outcome = "quit";
    s.transcript = {{"2026-11-23T18:07:03.000002Z", 'S', "220 mail.example.com ESMTP Postfix"},
                    {"2026-11-23T18:07:03.100000Z", 'C', "EHLO \x1b]0;pwned\x07"}};
    s.transcript_truncated = true;
    return s;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

TEST(records_view, message_list_is_an_aligned_escaped_table) {
    auto second = sample_message();
    second.id = 7;
    second.recipients = {"c@victim.example"};
    second.headers.subject = "short";
    std::ostringstream out;
    render_message_list(out, {sample_message(), second});
    const auto lines = lines_of(out.str());
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[0].rfind("ID  RECEIVED             PEER         LISTENER  FROM            TO", 0), 0u) << lines[0];
    EXPECT_EQ(lines[1].rfind("42  2026-11-23 18:07:03  203.0.113.9  smtp      x@spam.example  a@victim.example (+1)", 0), 0u)
        << lines[1];
    // Every column starts at the same offset on every line.
    EXPECT_EQ(lines[0].find("SUBJECT"), lines[1].find("Win"));
    EXPECT_EQ(lines[0].find("SUBJECT"), lines[2].find("short"));
    EXPECT_EQ(lines[1].substr(lines[1].find("Win")), "Win \\x1b[31mbig\\xff");
    EXPECT_EQ(out.str().find('\x1b'), std::string::npos);
}

TEST(records_view, empty_list_prints_the_header) {
    std::ostringstream out;
    render_credential_list(out, {});
    EXPECT_EQ(out.str(), "ID  AT  PEER  LISTENER  MECHANISM  USERNAME  PASSWORD  ACCEPTED\n");
}

TEST(records_view, session_show_has_the_timestamped_transcript) {
    std::ostringstream out;
    render_session(out, sample_session());
    const std::string text = out.str();
    EXPECT_NE(text.find("peer:         [2001:db8::1]:40000\n"), std::string::npos) << text;
    EXPECT_NE(text.find("tls:          TLSv1.3 TLS_AES_256_GCM_SHA384\n"), std::string::npos) << text;
    EXPECT_NE(text.find("\ntranscript:\n2026-11-23T18:07:03.000002Z  S: 220 mail.example.com ESMTP Postfix\n"
                        "2026-11-23T18:07:03.100000Z  C: EHLO \\x1b]0;pwned\\x07\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("(transcript truncated"), std::string::npos);
    EXPECT_EQ(text.find('\x1b'), std::string::npos);
    EXPECT_EQ(text.find('\x07'), std::string::npos);
}

TEST(records_view, json_keeps_the_data_and_is_always_valid) {
    const auto document = to_json(std::vector<store::message_record>{sample_message()});
    std::ostringstream out;
    print_json(out, document);
    const boost::json::value parsed = boost::json::parse(out.str());  // throws when invalid
    ASSERT_TRUE(parsed.is_array());
    const auto& message = parsed.as_array().at(0).as_object();
    EXPECT_EQ(message.at("id").as_int64(), 42);
    EXPECT_EQ(message.at("queue_id").as_string(), "4F9D21A0B3");
    EXPECT_EQ(message.at("recipients").as_array().size(), 2u);
    EXPECT_EQ(message.at("peer_port").to_number<int>(), 51234);
    EXPECT_EQ(message.at("headers").at("subject").as_string(), "Win \x1b[31mbig\xef\xbf\xbd");  // invalid byte -> U+FFFD
    EXPECT_EQ(out.str().find('\x1b'), std::string::npos);  // escaped as \u001b by the serializer
    EXPECT_EQ(out.str().back(), '\n');
}

// boost::json escapes only C0: a C1 CSI (U+009B), DEL or a bidi override in a subject, an
// address or a header would reach the terminal of `--json` raw.
TEST(records_view, json_escapes_c1_del_and_bidi_controls) {
    auto m = sample_message();
    m.headers.subject = "a\xc2\x9b" "2Jb\x7f" "c\xe2\x80\xae" "exe.txt\xe2\x81\xa6" "d\xe2\x80\x8f\xd8\x9c";
    m.mail_from = "x\xe2\x80\xad@spam.example";
    m.recipients = {"v\xc2\x85@victim.example"};
    std::ostringstream out;
    print_json(out, to_json(m));
    const std::string text = out.str();
    for (const char* raw : {"\xc2\x9b", "\x7f", "\xe2\x80\xae", "\xe2\x81\xa6", "\xe2\x80\x8f", "\xd8\x9c", "\xe2\x80\xad", "\xc2\x85"})
        EXPECT_EQ(text.find(raw), std::string::npos) << "raw control in " << text;
    for (const char* escaped : {"\\u009b", "\\u007f", "\\u202e", "\\u2066", "\\u200f", "\\u061c", "\\u202d", "\\u0085"})
        EXPECT_NE(text.find(escaped), std::string::npos) << escaped << " missing in " << text;
    // Still valid JSON, and it decodes to the same values.
    const boost::json::value parsed = boost::json::parse(text);
    EXPECT_EQ(parsed.at("headers").at("subject").as_string(), m.headers.subject);
    EXPECT_EQ(parsed.at("mail_from").as_string(), m.mail_from);
    EXPECT_EQ(parsed.at("recipients").as_array().at(0).as_string(), m.recipients[0]);
}

TEST(records_view, session_and_credential_json_shape) {
    const auto session = to_json(sample_session()).as_object();
    EXPECT_EQ(session.at("transcript").as_array().size(), 2u);
    EXPECT_EQ(session.at("transcript").as_array()[1].at("direction").as_string(), "C");
    EXPECT_TRUE(session.at("ended_at").is_null());
    EXPECT_TRUE(session.at("transcript_truncated").as_bool());

    store::credential_record credential;
    credential.id = 3;
    credential.mechanism = "PLAIN";
    credential.username = "admin";
    credential.password = "p\xe4ss";  // latin-1 from the wire
    credential.raw = "AGFkbWluAHDkc3M=";
    credential.accepted = true;
    const auto object = to_json(credential).as_object();
    EXPECT_EQ(object.at("password").as_string(), "p\xef\xbf\xbdss");
    EXPECT_EQ(object.at("raw").as_string(), "AGFkbWluAHDkc3M=");  // exact bytes stay recoverable
    EXPECT_TRUE(object.at("accepted").as_bool());
}

TEST(json_safe, keeps_valid_utf8) {
    EXPECT_EQ(json_safe("a\xc3\xbc\xe2\x82\xac\xf0\x9f\x98\x80"), "a\xc3\xbc\xe2\x82\xac\xf0\x9f\x98\x80");
    EXPECT_EQ(json_safe("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

}  // namespace
}  // namespace relaybait::cli
