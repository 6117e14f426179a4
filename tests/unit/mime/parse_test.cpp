#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <mutex>
#include <vector>

#include "mime/message.hpp"

using namespace relaybait;

namespace {

std::string crlf(std::string text) {
    std::string out;
    for (char c : text) {
        if (c == '\n') out += '\r';
        out += c;
    }
    return out;
}

}  // namespace

TEST(MimeParse, SimpleMessage) {
    const auto m = mime::parse(crlf("From: a@example.com\nTo: b@example.org\nSubject: hello\n\nline one\nline two\n"));
    EXPECT_EQ(m.subject, "hello");
    EXPECT_EQ(m.from, "a@example.com");
    EXPECT_EQ(m.to, "b@example.org");
    EXPECT_NE(m.text_body.find("line two"), std::string::npos);
    EXPECT_TRUE(m.attachments.empty());
    ASSERT_EQ(m.headers.size(), 3u);
    EXPECT_EQ(m.headers[0].name, "From");
    ASSERT_NE(m.find_header("subject"), nullptr);
    EXPECT_EQ(*m.find_header("SUBJECT"), "hello");
    EXPECT_EQ(m.find_header("X-None"), nullptr);
}

TEST(MimeParse, DecodesEveryEncodedWord) {
    const auto m = mime::parse(
        "Subject: =?UTF-8?B?SGVsbG8g?= =?UTF-8?Q?w=C3=B6rld?= and =?ISO-8859-1?Q?caf=E9?=\r\n"
        "X-Test: plain =?utf-8?b?MS4yLjMuNA==?= tail\r\n\r\nbody\r\n");
    EXPECT_EQ(m.subject, "Hello wörld and café");
    ASSERT_NE(m.find_header("X-Test"), nullptr);
    EXPECT_EQ(*m.find_header("x-test"), "plain 1.2.3.4 tail");
}

TEST(MimeParse, FoldedHeaderUnfolded) {
    const auto m = mime::parse("Subject: part one\r\n  part two\r\n\r\nx\r\n");
    EXPECT_EQ(m.subject, "part one  part two");
}

TEST(MimeParse, EightBitHeadersBecomeUtf8) {
    const auto m = mime::parse(std::string("Subject: caf\xe9 \xd0\xbf\r\n\r\nbody\r\n"));
    EXPECT_FALSE(m.subject.empty());
    // Whatever the guess, the result is valid UTF-8 and keeps the ASCII part.
    EXPECT_EQ(m.subject.rfind("caf", 0), 0u);
}

TEST(MimeParse, RepeatedHeaders) {
    const auto m = mime::parse("Received: one\r\nReceived: two\r\nSubject: s\r\n\r\nb\r\n");
    const auto values = m.header_values("received");
    ASSERT_EQ(values.size(), 2u);
    EXPECT_EQ(values[0], "one");
    EXPECT_EQ(values[1], "two");
}

TEST(MimeParse, MultipartWithAttachmentsAndCharsets) {
    const std::string raw = crlf(
        "From: x@y\n"
        "Subject: multi\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"BOUND\"\n"
        "\n"
        "preamble\n"
        "--BOUND\n"
        "Content-Type: multipart/alternative; boundary=\"ALT\"\n"
        "\n"
        "--ALT\n"
        "Content-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
        "caf=E9 au lait=\n"
        " suite\n"
        "--ALT\n"
        "Content-Type: text/html; charset=utf-8\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "PGI+aGk8L2I+\n"
        "--ALT--\n"
        "--BOUND\n"
        "Content-Type: application/zip; name=\"=?UTF-8?B?ZmFjdHVyZS56aXA=?=\"\n"
        "Content-Disposition: attachment; filename=\"=?UTF-8?B?ZmFjdHVyZS56aXA=?=\"\n"
        "Content-Transfer-Encoding: base64\n"
        "\n"
        "aGVsbG8=\n"
        "--BOUND\n"
        "Content-Type: text/plain; name=notes.txt\n"
        "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt\n"
        "\n"
        "attached text\n"
        "--BOUND--\n");
    const auto m = mime::parse(raw);
    EXPECT_EQ(m.subject, "multi");
    EXPECT_NE(m.text_body.find("café au lait suite"), std::string::npos) << m.text_body;
    EXPECT_EQ(m.html_body, "<b>hi</b>");
    ASSERT_EQ(m.attachments.size(), 2u);
    EXPECT_EQ(m.attachments[0].filename, "facture.zip");
    EXPECT_EQ(m.attachments[0].content_type, "application/zip");
    EXPECT_EQ(m.attachments[0].size, 5u);
    EXPECT_EQ(m.attachments[0].md5, "5d41402abc4b2a76b9719d911017c592");
    EXPECT_EQ(m.attachments[0].sha1, "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
    EXPECT_EQ(m.attachments[0].sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    EXPECT_EQ(m.attachments[1].filename, "résumé.txt");
    EXPECT_EQ(m.attachments[1].content_type, "text/plain");
    EXPECT_EQ(m.text_body.find("attached text"), std::string::npos);
    EXPECT_GE(m.part_count, 5u);
}

TEST(MimeParse, NestedMessageRfc822) {
    const std::string raw = crlf(
        "Subject: outer\n"
        "Content-Type: multipart/mixed; boundary=b1\n"
        "\n"
        "--b1\n"
        "Content-Type: text/plain\n"
        "\n"
        "outer text\n"
        "--b1\n"
        "Content-Type: message/rfc822\n"
        "\n"
        "Subject: inner\n"
        "Content-Type: text/plain\n"
        "\n"
        "inner text\n"
        "--b1--\n");
    const auto m = mime::parse(raw);
    EXPECT_EQ(m.subject, "outer");
    EXPECT_NE(m.text_body.find("outer text"), std::string::npos);
    EXPECT_NE(m.text_body.find("inner text"), std::string::npos);
}

TEST(MimeParse, Limits) {
    std::string raw;
    for (int i = 0; i < 50; ++i) raw += "X-H" + std::to_string(i) + ": v\r\n";
    raw += "Subject: " + std::string(5000, 's') + "\r\n\r\n" + std::string(10000, 'b') + "\r\n";
    mime::limits bounds;
    bounds.max_headers = 10;
    bounds.max_header_length = 100;
    bounds.max_text_bytes = 1000;
    const auto m = mime::parse(raw, bounds);
    EXPECT_EQ(m.headers.size(), 10u);
    EXPECT_TRUE(m.truncated);
    EXPECT_LE(m.text_body.size(), 1000u);
    for (const auto& h : m.headers) EXPECT_LE(h.value.size(), 100u);
}

TEST(MimeParse, AttachmentAndPartLimits) {
    std::string raw = "Content-Type: multipart/mixed; boundary=Z\r\n\r\n";
    for (int i = 0; i < 40; ++i)
        raw += "--Z\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f" +
               std::to_string(i) + ".bin\r\n\r\n" + std::string(1000, 'q') + "\r\n";
    raw += "--Z--\r\n";
    mime::limits bounds;
    bounds.max_attachments = 5;
    bounds.max_decoded_bytes = 2500;
    const auto m = mime::parse(raw, bounds);
    EXPECT_EQ(m.attachments.size(), 5u);
    EXPECT_TRUE(m.truncated);
    EXPECT_FALSE(m.attachments[0].truncated);
    EXPECT_TRUE(m.attachments[2].truncated);
    EXPECT_EQ(m.attachments[2].size, 1000u);  // real size still reported
    mime::limits few_parts;
    few_parts.max_parts = 3;
    EXPECT_LE(mime::parse(raw, few_parts).attachments.size(), 2u);
}

TEST(MimeParse, DeepNestingIsBounded) {
    std::string raw = "Subject: deep\r\n";
    const int depth = 2000;
    for (int i = 0; i < depth; ++i)
        raw += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) + "\r\n\r\n--b" + std::to_string(i) + "\r\n";
    raw += "Content-Type: text/plain\r\n\r\ndeep text\r\n";
    const auto start = std::chrono::steady_clock::now();
    const auto m = mime::parse(raw);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    EXPECT_EQ(m.subject, "deep");
    EXPECT_TRUE(m.truncated);
}

TEST(MimeParse, HugeBoundaryAndGarbage) {
    const std::string boundary(100000, 'B');
    std::string raw = "Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n\r\n--" + boundary +
                      "\r\nContent-Type: text/plain\r\n\r\nhi\r\n--" + boundary + "--\r\n";
    EXPECT_NO_THROW(mime::parse(raw));
    EXPECT_NO_THROW(mime::parse(""));
    EXPECT_NO_THROW(mime::parse("\r\n\r\n"));
    EXPECT_NO_THROW(mime::parse("no headers at all, just text"));
    static constexpr char with_nuls[] = "Subject: \0nul\r\n\r\n\0\0\xff";
    EXPECT_NO_THROW(mime::parse(std::string(with_nuls, sizeof with_nuls - 1)));
    EXPECT_NO_THROW(mime::parse("Content-Type: multipart/mixed\r\n\r\n--\r\n--\r\n"));
    EXPECT_NO_THROW(mime::parse("Content-Type: text/plain; charset=x-unknown-charset\r\n\r\n\xe9t\xe9\r\n"));
    EXPECT_NO_THROW(mime::parse("Content-Transfer-Encoding: base64\r\n\r\n!!!!====****\r\n"));
}

TEST(MimeParse, UnknownCharsetFallsBackToLatin1) {
    const auto m = mime::parse("Content-Type: text/plain; charset=x-bogus\r\n\r\nt\xe9st\r\n");
    EXPECT_NE(m.text_body.find("tést"), std::string::npos) << m.text_body;
}

TEST(MimeParse, RandomGarbageNeverCrashes) {
    std::mt19937 rng(1234);
    const std::string pieces[] = {"Content-Type: multipart/mixed; boundary=x\r\n", "--x\r\n", "--x--\r\n", "\r\n",
                                  "Content-Transfer-Encoding: base64\r\n", "=?utf-8?b?", "?=", "Subject: ",
                                  "Content-Type: message/rfc822\r\n", "\xff\xfe", "=\r\n", "filename*0=\"a\"; ",
                                  "Content-Disposition: attachment; filename=\"", "Content-Type: text/html\r\n"};
    for (int round = 0; round < 500; ++round) {
        std::string raw;
        const int n = static_cast<int>(rng() % 40);
        for (int i = 0; i < n; ++i) {
            if (rng() % 4 == 0)
                raw += static_cast<char>(rng() % 256);
            else
                raw += pieces[rng() % std::size(pieces)];
        }
        EXPECT_NO_THROW(mime::parse(raw));
    }
}

TEST(MimeDecode, HeaderValue) {
    EXPECT_EQ(mime::decode_header_value("=?utf-8?q?a_b?= =?utf-8?q?c?="), "a bc");
    EXPECT_EQ(mime::decode_header_value("plain"), "plain");
}

// ---- The GMime-free paths give what GMime gives -------------------------------------------

#include <gmime/gmime.h>

namespace {

std::string gmime_decode(std::string_view text) {
    static std::once_flag once;
    std::call_once(once, [] { g_mime_init(); });
    GMimeParserOptions* options = g_mime_parser_options_new();
    g_mime_parser_options_set_rfc2047_compliance_mode(options, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_address_compliance_mode(options, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_parameter_compliance_mode(options, GMIME_RFC_COMPLIANCE_LOOSE);
    static const char* fallback[] = {"utf-8", "windows-1252", nullptr};
    g_mime_parser_options_set_fallback_charsets(options, fallback);
    const std::string copy(text);
    char* decoded = g_mime_utils_header_decode_text(options, copy.c_str());
    std::string out = decoded != nullptr ? decoded : "";
    g_free(decoded);
    g_mime_parser_options_free(options);
    return out;
}

void expect_same(const mime::parsed_message& a, const mime::parsed_message& b, const std::string& raw) {
    SCOPED_TRACE(raw.substr(0, 400));
    ASSERT_EQ(a.headers.size(), b.headers.size());
    for (std::size_t i = 0; i < a.headers.size(); ++i) {
        EXPECT_EQ(a.headers[i].name, b.headers[i].name);
        EXPECT_EQ(a.headers[i].value, b.headers[i].value);
    }
    EXPECT_EQ(a.subject, b.subject);
    EXPECT_EQ(a.from, b.from);
    EXPECT_EQ(a.to, b.to);
    EXPECT_EQ(a.text_body, b.text_body);
    EXPECT_EQ(a.html_body, b.html_body);
    EXPECT_EQ(a.attachments.size(), b.attachments.size());
    EXPECT_EQ(a.part_count, b.part_count);
    EXPECT_EQ(a.truncated, b.truncated);
    EXPECT_EQ(a.parse_failed, b.parse_failed);
}

}  // namespace

TEST(MimeParse, PlainAsciiHeaderValuesDecodeToThemselves) {
    std::mt19937 rng(7);
    const std::string alphabet = "abcXYZ 019 \t  .,;:<>@()[]\"'?=_-/\\~!#$%&*+^`{|}";
    for (int round = 0; round < 20000; ++round) {
        std::string value;
        const int n = static_cast<int>(rng() % 60);
        for (int i = 0; i < n; ++i) value += alphabet[rng() % alphabet.size()];
        if (value.find("=?") != std::string::npos) continue;
        ASSERT_EQ(mime::decode_header_value(value), [&] {
            std::string g = gmime_decode(value);
            const auto b = g.find_first_not_of(" \t");
            const auto e = g.find_last_not_of(" \t");
            return b == std::string::npos ? std::string() : g.substr(b, e - b + 1);
        }()) << "[" << value << "]";
    }
}

TEST(MimeParse, FastPathMatchesGMime) {
    std::vector<std::string> cases = {
        crlf("From: <bench@example.org>\nTo: <root@mail.example.com>\nDate: Mon, 23 Nov 2026 21:52:36 +0000 (UTC)\n"
             "Message-Id: <0f5a.0003.0012@client.example.org>\n\n1XXXX\n2XXXX\n"),
        "Subject: lf only\n\nbody line\nlast",
        "Subject: no body\r\n\r\n",
        "Subject: folded\r\n  more\r\n\tand tab\r\nX-A:   spaced   \r\n\r\n\r\n\r\nbody after blank lines\r\n",
        "Subject: hi\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
        "Subject: hi\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nbody\r\n",
        "Subject: hi\r\nContent-Type: TEXT/PLAIN;\r\n charset=\"UTF-8\"\r\n\r\nbody\r\n",
        "Subject: hi\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nbody\r\n",
        "Subject: hi\r\nContent-Type: text/html\r\n\r\n<p>body</p>\r\n",
        "Subject: hi\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n",
        "Subject: hi\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db=\r\nc\r\n",
        "Subject: hi\r\nContent-Disposition: attachment; filename=x.txt\r\n\r\nbody\r\n",
        "Subject: =?UTF-8?B?SGVsbG8g?= world\r\n\r\nbody\r\n",
        "Subject hi\r\nNot a header\r\n\r\nbody\r\n",
        " leading continuation\r\nSubject: x\r\n\r\nbody\r\n",
        "Subject : space before colon\r\n\r\nbody\r\n",
        "Subject: bare\rcr\r\n\r\nbody\r\n",
        "Subject: 8bit caf\xc3\xa9\r\n\r\nbody\r\n",
        "Subject: x\r\n\r\nbody caf\xe9\r\n",
        "From hello Mon Jan 1\r\nSubject: mbox\r\n\r\nbody\r\n",
        "just a line of text without a header block",
        "",
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
        "Content-Type: text/plain\r\n\r\nplain\r\n--b\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--b--\r\n",
        "Subject: =?\r\nX: ?=\r\n\r\n=?utf-8?q?x?=\r\n",
        "Subject: x\r\n\r\nFrom the body\r\n.\r\n..dots\r\n",
    };
    // Header names with every printable character GMime might refuse.
    for (char c = '!'; c <= '~'; ++c) {
        if (c == ':') continue;
        cases.push_back(std::string("X") + c + "Name: v\r\nSubject: s\r\n\r\nbody\r\n");
        cases.push_back(std::string(1, c) + ": v\r\nSubject: s\r\n\r\nbody\r\n");
    }
    std::mt19937 rng(11);
    const std::vector<std::string> names = {"Subject", "From", "To", "X-Mailer", "Message-ID", "Received", "content-type",
                                            "Content-Transfer-Encoding", "X-Relay-Test"};
    const std::vector<std::string> values = {" hello", " 198.51.100.7", "  spaced  out ", "\tx", " a=?b", " ?=",
                                             " text/plain", " text/plain; charset=utf-8", " 7bit", " <a@b.c>", ""};
    for (int round = 0; round < 3000; ++round) {
        std::string raw;
        const int headers = static_cast<int>(rng() % 6);
        const std::string eol = rng() % 4 == 0 ? "\n" : "\r\n";
        for (int i = 0; i < headers; ++i) {
            raw += names[rng() % names.size()] + ":" + values[rng() % values.size()] + eol;
            if (rng() % 5 == 0) raw += " folded" + values[rng() % values.size()] + eol;
        }
        raw += eol;
        const int lines = static_cast<int>(rng() % 8);
        for (int i = 0; i < lines; ++i) raw += "line " + std::to_string(rng() % 1000) + values[rng() % values.size()] + eol;
        if (rng() % 3 == 0 && !raw.empty()) raw.pop_back();
        cases.push_back(raw);
    }
    for (const auto& raw : cases) expect_same(mime::parse(raw), mime::parse_with_gmime(raw), raw);
}

TEST(MimeParse, FastPathDecisionPerByte) {
    // Every byte value at every position of a 16-byte block and its tail: only printable ASCII,
    // tab, CR (before LF) and LF keep a message on the fast path, and both paths always agree.
    for (int c = 0; c < 256; ++c) {
        for (std::size_t at : {0u, 7u, 15u, 16u, 17u, 31u, 40u}) {
            std::string body(48, 'x');
            body[at] = static_cast<char>(c);
            const std::string raw = "Subject: s\r\n\r\n" + body + "\r\n";
            expect_same(mime::parse(raw), mime::parse_with_gmime(raw), raw);
        }
    }
}
