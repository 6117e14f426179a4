#include "store/header_parser.hpp"

#include <gtest/gtest.h>

using namespace relaybait::store;

TEST(HeaderParser, ParsesTheIndexedFields) {
    const auto h = parse_headers(
        "Received: from x\r\nSubject: Hello 1.2.3.4\r\nFrom: \"A\" <a@example.com>\r\nTo: b@example.net\r\n"
        "Date: Mon, 23 Nov 2026 18:07:03 +0000\r\nMessage-ID: <id@x>\r\nX-Mailer: PHPMailer 6\r\n"
        "User-Agent: Thunderbird\r\n\r\nSubject: not a header, the body\r\n");
    EXPECT_EQ(h.subject, "Hello 1.2.3.4");
    EXPECT_EQ(h.from, "\"A\" <a@example.com>");
    EXPECT_EQ(h.to, "b@example.net");
    EXPECT_EQ(h.date, "Mon, 23 Nov 2026 18:07:03 +0000");
    EXPECT_EQ(h.message_id, "<id@x>");
    EXPECT_EQ(h.x_mailer, "PHPMailer 6");
    EXPECT_EQ(h.user_agent, "Thunderbird");
}

TEST(HeaderParser, UnfoldsContinuationLinesAndIgnoresCase) {
    const auto h = parse_headers("SUBJECT: part one\r\n\tpart two\r\n  part three\r\nto :x@y\nfrom:\n z@w\n\nbody");
    EXPECT_EQ(h.subject, "part one\tpart two  part three");
    EXPECT_EQ(h.to, "x@y");
    EXPECT_EQ(h.from, "z@w");
}

TEST(HeaderParser, FirstOccurrenceWinsAndGarbageIsIgnored) {
    const auto h = parse_headers(
        "Subject: first\r\n\x01\xFFgarbage line\r\n continuation of garbage\r\nSubject: second\r\n"
        "Bad Name: x\r\n: empty name\r\nFrom: \xC3\xA9\xFF raw\r\n\r\n");
    EXPECT_EQ(h.subject, "first");
    EXPECT_EQ(h.from, "\xC3\xA9\xFF raw");  // raw bytes kept, no decoding
    EXPECT_TRUE(h.to.empty());
}

TEST(HeaderParser, BoundsValuesAndTheSection) {
    std::string big = "Subject: " + std::string(100'000, 'a') + "\r\n\r\n";
    EXPECT_EQ(parse_headers(big).subject.size(), max_header_value);
    std::string folded = "Subject: x\r\n";
    for (int i = 0; i < 10'000; ++i) folded += " yyyyyyyy\r\n";
    folded += "From: late@x\r\n\r\n";
    const auto h = parse_headers(folded);
    EXPECT_EQ(h.subject.size(), max_header_value);
    EXPECT_TRUE(h.from.empty());  // beyond the 64 KB capture
    EXPECT_TRUE(parse_headers("").subject.empty());
    EXPECT_TRUE(parse_headers("\r\nSubject: body\r\n").subject.empty());
    EXPECT_EQ(parse_headers("Subject: no end").subject, "no end");
}

TEST(HeaderParser, HeaderSectionEnd) {
    EXPECT_EQ(header_section_end("A: b\r\n\r\nbody"), 8u);
    EXPECT_EQ(header_section_end("A: b\n\nbody"), 6u);
    EXPECT_EQ(header_section_end("A: b\r\n"), std::string_view::npos);
}
