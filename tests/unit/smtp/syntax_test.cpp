#include "smtp/syntax.hpp"

#include <gtest/gtest.h>

namespace relaybait::smtp::syntax {
namespace {

std::vector<std::string> words(std::string_view line) {
    std::vector<std::string> out;
    for (auto& t : tokenize(line)) out.push_back(t.text);
    return out;
}

TEST(Tokenize, SplitsLikePostfixSmtpdToken) {
    EXPECT_EQ(words("MAIL FROM:<a@b>"), (std::vector<std::string>{"MAIL", "FROM:", "<a@b>"}));
    EXPECT_EQ(words("rcpt to:<a@b> NOTIFY=NEVER"), (std::vector<std::string>{"rcpt", "to:", "<a@b>", "NOTIFY=NEVER"}));
    EXPECT_EQ(words("MAIL FROM:<a b@c>"), (std::vector<std::string>{"MAIL", "FROM:", "<a b@c>"}));
    EXPECT_EQ(words("  NOOP\t x\r"), (std::vector<std::string>{"NOOP", "x"}));
    EXPECT_EQ(words("NOOP\rQUIT"), (std::vector<std::string>{"NOOP", "QUIT"}));
    EXPECT_TRUE(words(" \t").empty());
    auto t = tokenize("MAIL FROM:<unterminated");
    ASSERT_EQ(t.size(), 3u);
    EXPECT_TRUE(t[2].error);
    EXPECT_TRUE(t[2].address);
    EXPECT_EQ(words("X \"a b\" [1 2]"), (std::vector<std::string>{"X", "\"a b\"", "[1 2]"}));
}

TEST(Address, ExtractsAndValidates) {
    auto ok = [](std::string_view text, bool empty_ok = false, bool utf8 = false) {
        token t;
        t.text = std::string(text);
        auto r = extract_address(t, empty_ok, utf8);
        return r.ok ? r.address : std::string("BAD");
    };
    EXPECT_EQ(ok("<alice@example.org>"), "alice@example.org");
    EXPECT_EQ(ok("alice@example.org"), "alice@example.org");
    EXPECT_EQ(ok("<>", true), "");
    EXPECT_EQ(ok("<>", false), "BAD");
    EXPECT_EQ(ok("<a b@example.org>"), "BAD");
    EXPECT_EQ(ok("<bad address@@example.com>"), "BAD");
    EXPECT_EQ(ok("<victim@>"), "BAD");
    EXPECT_EQ(ok("<a@b@c.d>"), "a@b@c.d");  // the last '@' separates the domain
    EXPECT_EQ(ok("<a@b@[300.0.0.1]>"), "BAD");
    EXPECT_EQ(ok("<@mx1.example.net:victim@example.com>"), "victim@example.com");
    EXPECT_EQ(ok("<@a,@b:victim@example.com>"), "victim@example.com");
    EXPECT_EQ(ok("<victim%example.com@mx1.example.net>"), "victim%example.com@mx1.example.net");
    EXPECT_EQ(ok("<postmaster>"), "postmaster");
    EXPECT_EQ(ok("<\"john doe\"@example.org>"), "\"john doe\"@example.org");
    EXPECT_EQ(ok("<user@[192.0.2.1]>"), "user@[192.0.2.1]");
    EXPECT_EQ(ok("<user@[300.0.2.1]>"), "BAD");
    EXPECT_EQ(ok("<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", false, false), "BAD");
    EXPECT_EQ(ok("<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", false, true), "j\xc3\xb6rg@b\xc3\xbc" "cher.example");
    token broken;
    broken.text = "<alice@example.org";
    broken.error = true;
    EXPECT_FALSE(extract_address(broken, true, false).ok);
}

TEST(Header, PostfixIsHeader) {
    EXPECT_EQ(is_header("Host:"), 4u);
    EXPECT_EQ(is_header("From:"), 4u);
    EXPECT_EQ(is_header("X-Foo :"), 5u);
    EXPECT_EQ(is_header(":"), 0u);
    EXPECT_EQ(is_header("NOOP"), 0u);
    EXPECT_EQ(is_header("a b:"), 0u);
}

TEST(Utf8, Validation) {
    EXPECT_TRUE(valid_utf8("plain"));
    EXPECT_TRUE(valid_utf8("j\xc3\xb6rg"));
    EXPECT_TRUE(valid_utf8(std::string_view("a\0b", 3)));
    EXPECT_FALSE(valid_utf8("\xfc"));
    EXPECT_FALSE(valid_utf8("\xc3"));
    EXPECT_FALSE(valid_utf8("\xc0\x80"));         // overlong
    EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));     // surrogate
    EXPECT_TRUE(valid_utf8("\xf0\x9f\x98\x80"));  // emoji
}

TEST(Base64, RoundTripAndStrictness) {
    EXPECT_EQ(base64_encode(""), "");
    EXPECT_EQ(base64_encode("Username:"), "VXNlcm5hbWU6");
    EXPECT_EQ(base64_encode("Password:"), "UGFzc3dvcmQ6");
    EXPECT_EQ(*base64_decode("AHRlc3R1c2VyAFMzY3JldFBhc3Mh"), std::string("\0testuser\0S3cretPass!", 21));
    EXPECT_EQ(*base64_decode("YQ=="), "a");
    EXPECT_EQ(*base64_decode("YWI="), "ab");
    EXPECT_EQ(*base64_decode(""), "");
    EXPECT_FALSE(base64_decode("YQ"));
    EXPECT_FALSE(base64_decode("Y==="));
    EXPECT_FALSE(base64_decode("YQ==YQ=="));
    EXPECT_FALSE(base64_decode("Y!Q="));
    std::string out;
    EXPECT_EQ(sasl_decode64("YWI=", out), sasl_base64::ok);
    EXPECT_EQ(out, "ab");
    EXPECT_EQ(sasl_decode64("!!!!", out), sasl_base64::bad_protocol);
    EXPECT_EQ(sasl_decode64("dGVzdA", out), sasl_base64::incomplete);
    EXPECT_EQ(sasl_decode64("=", out), sasl_base64::incomplete);
    EXPECT_EQ(internalize("\"root\"@mx1.example.net"), "root@mx1.example.net");
    EXPECT_EQ(internalize("\"a\\\"b\"@c"), "a\"b@c");
    for (const std::string& s : std::vector<std::string>{"x", "xy", "xyz", "hello world", std::string("\0\xff\x10", 3)})
        EXPECT_EQ(*base64_decode(base64_encode(s)), s);
}

// common/text.hpp, shared by every component (syntax:: re-exports three of them).
TEST(SharedText, CaseFoldingJoinAndBase64) {
    EXPECT_TRUE(iequals("MAIL FROM:", "mail from:"));
    EXPECT_FALSE(iequals("abc", "abcd"));
    EXPECT_FALSE(iequals("\xc9", "\xe9"));  // ASCII only, whatever the locale
    EXPECT_EQ(lowercase("EHLO Mx1.Example.NET \xc9"), "ehlo mx1.example.net \xc9");
    EXPECT_TRUE(text::istarts_with("Charset=utf-8", "charset"));
    EXPECT_FALSE(text::istarts_with("char", "charset"));
    EXPECT_EQ(text::join({}, ", "), "");
    EXPECT_EQ(text::join({"a"}, ", "), "a");
    EXPECT_EQ(text::join({"a", "b", "c"}, ", "), "a, b, c");
    EXPECT_EQ(text::join({"", "b"}, ","), ",b");
    EXPECT_EQ(base64_encode(std::string("\0\xff\x10\x80", 4)), "AP8QgA==");
}

TEST(Xtext, Decode) {
    EXPECT_EQ(*xtext_decode("abc+2Bdef"), "abc+def");
    EXPECT_FALSE(xtext_decode("abc+2"));
    EXPECT_FALSE(xtext_decode("a b"));
}

TEST(Hostname, Validation) {
    EXPECT_TRUE(valid_hostname("example.com", false));
    EXPECT_TRUE(valid_hostname("mx-1.example.com.", false));
    EXPECT_FALSE(valid_hostname("-bad.example", false));
    EXPECT_FALSE(valid_hostname("a..b", false));
    EXPECT_FALSE(valid_hostname("1234", false));
    EXPECT_FALSE(valid_hostname("", false));
}

TEST(HmacMd5, Rfc2104Vectors) {
    EXPECT_EQ(hmac_md5_hex(std::string(16, '\x0b'), "Hi There"), "9294727a3638bb1c13f48ef8158bfc9d");
    EXPECT_EQ(hmac_md5_hex("Jefe", "what do ya want for nothing?"), "750c783e6ab0b503eaa86e310a5db738");
    // RFC 2195 CRAM-MD5 example
    EXPECT_EQ(hmac_md5_hex("tanstaaftanstaaf", "<1896.697170952@postoffice.reston.mci.net>"),
              "b913a602c7eda7a495b4e6e7334d3890");
}

}  // namespace
}  // namespace relaybait::smtp::syntax
