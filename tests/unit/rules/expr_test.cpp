#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <random>

#include "common/text.hpp"
#include "mime/message.hpp"
#include "rules/expr.hpp"
#include "time_bound.hpp"

using namespace relaybait;
using namespace relaybait::rules;

namespace {

self_identity self() {
    self_identity s;
    s.ipv4 = {"198.51.100.23"};
    s.ipv6 = {"2001:db8::25"};
    s.hostname = "mx.example.net";
    s.ports = {25, 465, 587};
    return s;
}

// Compiles or reports "LINE:COL: message".
std::string error_of(std::string_view text) {
    try {
        compile(text, self());
    } catch (const expression_error& e) {
        const auto pos = position_of(text, e.offset());
        return std::to_string(pos.line) + ":" + std::to_string(pos.column) + ": " + e.what();
    }
    return "ok";
}

struct fixture {
    mime::parsed_message message;
    context ctx;
    fixture() {
        message = mime::parse(
            "From: Alice <alice@Sender.example>\r\n"
            "To: bob@example.org\r\n"
            "Subject: Relay TEST from 198.51.100.23\r\n"
            "X-Mailer: PHPMailer 6.0\r\n"
            "X-Token: abc\r\n"
            "Content-Type: multipart/mixed; boundary=B\r\n\r\n"
            "--B\r\nContent-Type: text/plain\r\n\r\nline1\r\nline2\r\nline3 secret-pass\r\nlast line\r\n"
            "--B\r\nContent-Type: text/html\r\n\r\n<p>Hello HTML</p>\r\n"
            "--B\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=invoice.zip\r\n\r\nPK\r\n"
            "--B--\r\n");
        ctx.hook = hook_point::data;
        ctx.client_ip = "203.0.113.9";
        ctx.listener = "submission";
        ctx.tls = true;
        ctx.tls_version = "TLSv1.3";
        ctx.helo = "spam.example";
        ctx.auth_user = "victim@example.org";
        ctx.auth_password = "secret-pass";
        ctx.mail_from = "alice@Sender.example";
        ctx.rcpt_to = {"bob@example.org", "carol@GMAIL.com"};
        ctx.message = &message;
        ctx.size = 4242;
    }
    bool eval(std::string_view text) const { return evaluate(*compile(text, self()), ctx); }
};

}  // namespace

TEST(Tokenizer, Tokens) {
    const auto t = tokenize(R"(subject contains "a\"b\x41\u00e9" and size >= 10 or $self.ipv4 [1, -2] # comment)");
    ASSERT_EQ(t.size(), 15u);
    EXPECT_EQ(t[0].kind, token_kind::identifier);
    EXPECT_EQ(t[2].kind, token_kind::string);
    EXPECT_EQ(t[2].text, "a\"bA\xc3\xa9");
    EXPECT_EQ(t[5].kind, token_kind::symbol);
    EXPECT_EQ(t[5].text, ">=");
    EXPECT_EQ(t[6].number, 10);
    EXPECT_EQ(t[8].kind, token_kind::reference);
    EXPECT_EQ(t[8].text, "self.ipv4");
    EXPECT_EQ(t[12].number, -2);
    EXPECT_EQ(t[14].kind, token_kind::end);
    EXPECT_EQ(tokenize("any-of [\"x\"]")[0].text, "any-of");
    EXPECT_EQ(tokenize("a\n  b")[1].offset, 4u);
}

TEST(Parser, ValidExpressions) {
    const char* valid[] = {
        "subject contains $self.ipv4",
        "subject contains any([\"a\",\"b\"])",
        "subject contains any-of [\"a\", \"b\",]",
        "header(\"X-Mailer\") startswith \"PHP\"",
        "body_tail(20) contains encoded($self.ipv4)",
        "client_ip in \"203.0.113.0/24\"",
        "rcpt_domain in [\"gmail.com\",\"yahoo.com\"]",
        "body contains $auth.password",
        "size > 100000",
        "attachment_count >= 1",
        "attachment_types contains \"application/zip\"",
        "subject matches \"(?i)test.*relay\"",
        "listener equals \"smtps\" and tls",
        "not (helo endswith \".example\")",
        "true", "false", "not not tls",
        "(((subject contains 'x')))",
        "subject contains_cs \"X\" or subject icontains \"x\"",
        "client_ip in [\"10.0.0.0/8\", \"::1\", \"2001:db8::/32\", $self.ip]",
        "rcpt_count == 3 and header_count != 0 and size < 5 and size <= 5 and size equals 5",
        "subject contains encoded([$self.ip, $self.hostname, \"x\"])",
        "mail_from_domain equals \"example.com\"\n  and\n  authenticated",
        "attachment_names endswith [\".zip\", \".exe\"] or attachment_sha256 equals \"00\"",
        "subject contains $self.ports",
    };
    for (const char* text : valid) EXPECT_EQ(error_of(text), "ok") << text;
}

TEST(Parser, MalformedInputHasPositions) {
    const std::pair<const char*, const char*> cases[] = {
        {"", "1:1: expected a condition, found the end of the expression"},
        {"subject", "1:8: expected an operator after field 'subject' (contains, equals, startswith, endswith, matches, in)"},
        {"subject contains", "1:17: expected a value (a string, a number, a list, $name, encoded(...)), found the end of the expression"},
        {"subjekt contains \"x\"", "1:1: unknown field 'subjekt'"},
        {"subject contains \"x", "1:18: unterminated string"},
        {"subject contains \"x\" and", "1:25: expected a condition, found the end of the expression"},
        {"(subject contains \"x\"", "1:22: expected ')', found the end of the expression"},
        {"subject contains \"x\")", "1:21: expected 'and', 'or' or the end of the expression, found ')'"},
        {"subject\n  frobs \"x\"", "2:3: unknown operator 'frobs' (contains, equals, startswith, endswith, matches, in)"},
        {"size > \"big\"", "1:8: expected a number, found a string"},
        {"size contains 3", "1:6: field 'size' is a number: expected ==, !=, <, <=, > or >=, found 'contains'"},
        {"subject == \"x\"", "1:9: field 'subject' is text: use 'equals' instead of '=='"},
        {"subject contains \"\\q\"", "1:19: unknown escape \\q"},
        {"subject contains $self.ipv5", "1:18: unknown value '$self.ipv5' (known: $self.ipv4, $self.ipv6, $self.ip, $self.hostname, $self.ports)"},
        {"subject contains $nope", "1:18: unknown value '$nope'"},
        {"subject contains $body", "1:18: '$body' cannot be used as a value"},
        {"header contains \"x\"", "1:8: field 'header' needs an argument: header(\"Name\")"},
        {"body_tail(0) contains \"x\"", "1:11: number of lines must be from 1 to 10000"},
        {"subject(1) contains \"x\"", "1:8: field 'subject' takes no argument"},
        {"client_ip in \"300.1.1.1/8\"", "1:14: invalid address or CIDR network \"300.1.1.1/8\""},
        {"client_ip in [\"10.0.0.0/33\"]", "1:15: invalid address or CIDR network \"10.0.0.0/33\""},
        {"subject matches \"(unclosed\"", "1:17: bad regular expression: missing ): (unclosed"},
        {"subject matches $mail_from", "1:17: 'matches' needs literal patterns in quotes"},
        {"subject contains [\"a\" \"b\"]", "1:23: expected ',' or ']' in list, found a string"},
        {"subject contains [[\"a\"]]", "1:19: lists cannot be nested"},
        {"subject contains \"a\" & tls", "1:22: unexpected character '&'"},
        {"subject contains \"a\" = \"b\"", "1:22: unknown operator '=' (use == or !=, or 'not')"},
        {"and tls", "1:1: expected a condition before 'and'"},
        {"size > 99999999999999999999", "1:8: number out of range"},
        {"subject contains any-of \"a\"", "1:25: expected '[' after 'any-of'"},
        {"tls and\n\n   subject startswith", "3:22: expected a value (a string, a number, a list, $name, encoded(...)), found the end of the expression"},
    };
    for (const auto& [text, expected] : cases) EXPECT_EQ(error_of(text), expected) << text;
}

TEST(Parser, Bounds) {
    std::string deep(200, '(');
    EXPECT_NE(error_of(deep + "tls" + std::string(200, ')')).find("nested too deeply"), std::string::npos);
    std::string nots;
    for (int i = 0; i < 200; ++i) nots += "not ";
    EXPECT_NE(error_of(nots + "tls").find("nested too deeply"), std::string::npos);
    EXPECT_NE(error_of(std::string(20000, ' ') + "tls").find("longer than"), std::string::npos);
    EXPECT_NE(error_of("subject matches \"" + std::string(5000, 'a') + "\"").find("pattern longer"), std::string::npos);
}

TEST(Evaluator, Operators) {
    fixture f;
    EXPECT_TRUE(f.eval("subject contains \"relay test\""));  // case-insensitive by default
    EXPECT_FALSE(f.eval("subject contains_cs \"relay test\""));
    EXPECT_TRUE(f.eval("subject contains_cs \"Relay TEST\""));
    EXPECT_TRUE(f.eval("subject icontains \"RELAY\""));
    EXPECT_TRUE(f.eval("subject equals \"relay test from 198.51.100.23\""));
    EXPECT_FALSE(f.eval("subject equals \"relay test\""));
    EXPECT_TRUE(f.eval("subject startswith \"relay\""));
    EXPECT_FALSE(f.eval("subject startswith \"test\""));
    EXPECT_TRUE(f.eval("subject endswith \".23\""));
    EXPECT_FALSE(f.eval("subject endswith_cs \"RELAY\""));
    EXPECT_TRUE(f.eval("subject matches \"(?i)test.*198\""));
    EXPECT_FALSE(f.eval("subject matches \"test.*198\""));  // regexes are case-sensitive unless (?i)
    EXPECT_TRUE(f.eval("subject contains [\"nothing\", \"from\"]"));
    EXPECT_TRUE(f.eval("subject contains any-of [\"nothing\", \"FROM\"]"));
    EXPECT_FALSE(f.eval("subject contains any([\"nothing\", \"else\"])"));
    EXPECT_FALSE(f.eval("subject contains \"\""));  // an empty needle never matches contains
    EXPECT_TRUE(f.eval("not subject contains \"zzz\""));
    EXPECT_TRUE(f.eval("tls and listener equals \"submission\" and tls_version equals \"tlsv1.3\""));
    EXPECT_TRUE(f.eval("subject contains \"zzz\" or helo endswith \".example\""));
    EXPECT_FALSE(f.eval("subject contains \"zzz\" and helo endswith \".example\""));
    EXPECT_TRUE(f.eval("not subject contains \"zzz\" and tls"));  // not binds tighter than and
    EXPECT_TRUE(f.eval("tls or tls and false"));                  // and binds tighter than or
    EXPECT_FALSE(f.eval("(tls or tls) and false"));
}

TEST(Evaluator, Fields) {
    fixture f;
    EXPECT_TRUE(f.eval("header(\"x-mailer\") startswith \"PHP\""));
    EXPECT_FALSE(f.eval("header(\"X-Missing\") contains \"a\""));
    EXPECT_TRUE(f.eval("headers contains \"phpmailer\""));
    EXPECT_TRUE(f.eval("header_names equals \"x-token\""));
    EXPECT_TRUE(f.eval("header_count == 6")) << f.message.headers.size();
    EXPECT_TRUE(f.eval("from contains \"alice@sender.example\""));
    EXPECT_TRUE(f.eval("to equals \"bob@example.org\""));
    EXPECT_TRUE(f.eval("body contains \"line2\""));
    EXPECT_FALSE(f.eval("body contains \"hello html\""));
    EXPECT_TRUE(f.eval("html contains \"hello html\""));
    EXPECT_TRUE(f.eval("body_tail(2) contains \"secret\""));
    EXPECT_TRUE(f.eval("body_tail(1) equals \"last line\""));
    EXPECT_FALSE(f.eval("body_tail(2) contains \"line2\""));
    EXPECT_TRUE(f.eval("body_tail(3) contains \"line2\""));
    EXPECT_TRUE(f.eval("attachment_count == 1 and attachment_names equals \"invoice.zip\""));
    EXPECT_TRUE(f.eval("attachment_types contains \"application/zip\""));
    EXPECT_TRUE(f.eval("attachment_sha256 startswith \"\" or attachment_count > 0"));
    EXPECT_TRUE(f.eval("size > 4000 and size < 5000"));
    EXPECT_TRUE(f.eval("mail_from_domain equals \"sender.example\""));
    EXPECT_TRUE(f.eval("auth_user equals \"victim@example.org\" and authenticated"));
    EXPECT_TRUE(f.eval("body contains $auth.password"));
    EXPECT_FALSE(f.eval("body contains $auth.user"));
    EXPECT_TRUE(f.eval("to contains $rcpt_to"));
    EXPECT_TRUE(f.eval("subject contains $self.ipv4"));
    EXPECT_FALSE(f.eval("subject contains $self.ipv6"));
    EXPECT_TRUE(f.eval("rcpt_count == 2"));
}

TEST(Evaluator, MultiValuedFields) {
    fixture f;
    EXPECT_TRUE(f.eval("rcpt_domain in [\"gmail.com\", \"yahoo.com\"]"));  // lower-cased
    EXPECT_TRUE(f.eval("rcpt_domain equals \"example.org\""));
    EXPECT_FALSE(f.eval("rcpt_domain equals \"example.net\""));
    EXPECT_TRUE(f.eval("rcpt_to endswith \"@gmail.com\""));
    EXPECT_TRUE(f.eval("not rcpt_to contains \"dave\""));
}

TEST(Evaluator, Cidr) {
    fixture f;
    EXPECT_TRUE(f.eval("client_ip in \"203.0.113.0/24\""));
    EXPECT_TRUE(f.eval("client_ip in \"203.0.113.9\""));
    EXPECT_FALSE(f.eval("client_ip in \"203.0.112.0/24\""));
    EXPECT_TRUE(f.eval("client_ip in \"203.0.112.0/23\""));
    EXPECT_TRUE(f.eval("client_ip in \"0.0.0.0/0\""));
    EXPECT_FALSE(f.eval("client_ip in \"::/0\""));
    EXPECT_TRUE(f.eval("client_ip in [\"10.0.0.0/8\", \"203.0.113.8/31\"]"));
    EXPECT_FALSE(f.eval("client_ip in \"203.0.113.10/31\""));
    f.ctx.client_ip = "::ffff:203.0.113.9";  // v4-mapped
    EXPECT_TRUE(f.eval("client_ip in \"203.0.113.0/24\""));
    f.ctx.client_ip = "2001:db8:abcd::1";
    EXPECT_TRUE(f.eval("client_ip in \"2001:db8::/32\""));
    EXPECT_TRUE(f.eval("client_ip in \"2001:db8:abcd::/48\""));
    EXPECT_FALSE(f.eval("client_ip in \"2001:db8:abce::/48\""));
    EXPECT_FALSE(f.eval("client_ip in \"10.0.0.0/8\""));
    f.ctx.client_ip = "198.51.100.23";
    EXPECT_TRUE(f.eval("client_ip in $self.ip"));
    f.ctx.client_ip = "garbage";
    EXPECT_FALSE(f.eval("client_ip in \"0.0.0.0/0\""));
    cidr c;
    EXPECT_FALSE(parse_cidr("10.0.0.0/", c));
    EXPECT_FALSE(parse_cidr("10.0.0.0/x", c));
    EXPECT_FALSE(parse_cidr("1.2.3/8", c));
    EXPECT_FALSE(parse_cidr("::1/129", c));
    EXPECT_TRUE(parse_cidr("::ffff:10.0.0.0/104", c));
    EXPECT_EQ(c.family, 4);
    EXPECT_EQ(c.prefix, 8);
}

TEST(Evaluator, HooksHideFields) {
    fixture f;
    f.ctx.hook = hook_point::connect;
    EXPECT_TRUE(f.eval("client_ip in \"203.0.113.0/24\" and tls"));
    EXPECT_FALSE(f.eval("helo contains \"spam\""));
    EXPECT_FALSE(f.eval("subject contains \"relay\""));
    EXPECT_FALSE(f.eval("size > 0"));
    EXPECT_FALSE(f.eval("authenticated"));
    f.ctx.hook = hook_point::ehlo;
    EXPECT_TRUE(f.eval("helo contains \"spam\""));
    EXPECT_FALSE(f.eval("auth_user contains \"victim\""));
    f.ctx.hook = hook_point::auth;
    EXPECT_TRUE(f.eval("auth_user contains \"victim\""));
    EXPECT_FALSE(f.eval("mail_from contains \"alice\""));
    f.ctx.hook = hook_point::mail;
    EXPECT_TRUE(f.eval("mail_from contains \"alice\""));
    EXPECT_FALSE(f.eval("rcpt_to contains \"bob\""));
    f.ctx.hook = hook_point::rcpt;
    EXPECT_TRUE(f.eval("rcpt_to contains \"bob\" and rcpt_count == 2"));
    EXPECT_FALSE(f.eval("body contains \"line\""));
    f.ctx.hook = hook_point::data;
    f.ctx.message = nullptr;  // data hook without a parsed message: message fields are unknown
    EXPECT_FALSE(f.eval("body contains \"line\""));
    EXPECT_TRUE(f.eval("size > 0"));
}

TEST(Evaluator, ShortSessionValuesNeverMatchSubstrings) {
    fixture f;
    f.ctx.auth_password = "a";  // would otherwise match nearly every body
    EXPECT_FALSE(f.eval("body contains $auth.password"));
    EXPECT_FALSE(f.eval("body contains encoded($auth.password)"));
    f.ctx.auth_password = "";
    f.ctx.auth_user = "";
    EXPECT_FALSE(f.eval("body contains $auth.password or authenticated"));
    f.ctx.auth_password = "line";
    EXPECT_TRUE(f.eval("body_tail(1) startswith $auth.password or body contains $auth.password"));
}

TEST(Evaluator, EncodedValuesAtRuntime) {
    fixture f;
    f.ctx.auth_password = "hunter22";
    mime::parsed_message m;
    m.text_body = "creds: aHVudGVyMjI= ok";  // base64("hunter22")
    f.ctx.message = &m;
    EXPECT_TRUE(f.eval("body contains encoded($auth.password)"));
    EXPECT_FALSE(f.eval("body contains $auth.password"));
    m.text_body = "creds: AHVUDGVYMJI= ok";  // base64 is compared case-sensitively
    EXPECT_FALSE(f.eval("body contains encoded($auth.password)"));
}

TEST(Regex, PathologicalPatternsAreLinear) {
    fixture f;
    mime::parsed_message m;
    m.text_body = std::string(100 * 1024, 'a');
    f.ctx.message = &m;
    const auto patterns = {"(a+)+$", "(a|aa)+$", "(a*)*b", "^(a|a?)+$", "(.*a){20}"};
    for (const char* p : patterns) {
        const auto expr = compile(std::string("body matches \"") + p + "\"", self());
        const auto start = std::chrono::steady_clock::now();
        evaluate(*expr, f.ctx);
        const auto elapsed = std::chrono::steady_clock::now() - start;
        EXPECT_LT(elapsed, std::chrono::milliseconds(100)) << p;
    }
    // Input beyond the regex input limit is not scanned.
    m.text_body = std::string(max_regex_input + 10, 'a') + "needle";
    EXPECT_FALSE(evaluate(*compile("body matches \"needle\"", self()), f.ctx));
    EXPECT_TRUE(evaluate(*compile("body contains \"needle\"", self()), f.ctx));
}

TEST(Regex, BackreferencesAndLookaroundsAreRejected) {
    EXPECT_NE(error_of("subject matches \"(a)\\\\1\"").find("bad regular expression"), std::string::npos);
    EXPECT_NE(error_of("subject matches \"(?=a)\"").find("bad regular expression"), std::string::npos);
}

TEST(Parser, RandomAndMutatedInputNeverCrashes) {
    std::mt19937 rng(20240601);
    const std::vector<std::string> seeds = {
        "subject contains encoded($self.ipv4) and not (helo endswith \".example\")",
        "client_ip in [\"203.0.113.0/24\", \"2001:db8::/32\"] or size > 100000",
        "header(\"X-Mailer\") startswith \"PHP\" and body_tail(20) matches \"(?i)relay\"",
        "rcpt_domain in any-of [\"gmail.com\"] and attachment_count >= 1",
    };
    const std::vector<std::string> words = {"and", "or", "not", "(", ")", "[", "]", ",", "\"", "'", "$self.ip",
                                            "$auth.user", "subject", "contains", "matches", "in", "encoded(", "any(",
                                            "any-of", "header(", "body_tail(", "==", ">=", "<", "!", "=", "\\", "\\x",
                                            "\\u12", "-", "9999999999999999999999", "#", "\n", "size", "tls", "true"};
    fixture f;
    std::size_t compiled = 0;
    for (int round = 0; round < 20000; ++round) {
        std::string text = seeds[rng() % seeds.size()];
        const int edits = 1 + static_cast<int>(rng() % 6);
        for (int e = 0; e < edits; ++e) {
            const std::size_t at = text.empty() ? 0 : rng() % (text.size() + 1);
            switch (rng() % 4) {
                case 0: text.insert(at, words[rng() % words.size()]); break;
                case 1: if (at < text.size()) text.erase(at, 1 + rng() % 8); break;
                case 2: if (at < text.size()) text[at] = static_cast<char>(rng() % 256); break;
                default: text.insert(at, 1, static_cast<char>(rng() % 128)); break;
            }
        }
        if (round % 5 == 0) {  // pure token soup
            text.clear();
            for (int k = 0; k < 12; ++k) text += words[rng() % words.size()] + " ";
        }
        try {
            auto expr = compile(text, self());
            ++compiled;
            evaluate(*expr, f.ctx);
        } catch (const expression_error& e) {
            EXPECT_LE(e.offset(), text.size());
        }
    }
    EXPECT_GT(compiled, 100u);
}

// The needle index (one pass, case folded on the fly) decides exactly like lower-casing the
// value and trying every needle with std::string_view::find / compare.
TEST(Expr, IndexedMatchingEqualsNaiveMatching) {
    std::mt19937 rng(5);
    const std::string alphabet = "aAbBzZ019.:[]%=-_ \t";
    auto random_text = [&](std::size_t max) {
        std::string t;
        const std::size_t n = rng() % (max + 1);
        for (std::size_t i = 0; i < n; ++i) t += alphabet[rng() % alphabet.size()];
        return t;
    };
    auto lower = [](std::string t) {
        for (auto& c : t)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        return t;
    };
    const char* ops[] = {"contains", "startswith", "endswith", "equals", "contains_cs", "startswith_cs", "endswith_cs",
                         "equals_cs", "in"};
    for (int round = 0; round < 400; ++round) {
        const std::string oper = ops[rng() % std::size(ops)];
        std::vector<std::string> needles;
        const int count = 1 + static_cast<int>(rng() % 6);
        for (int i = 0; i < count; ++i) needles.push_back(random_text(4));
        const bool encoded = rng() % 4 == 0;  // base64 forms are always case-sensitive
        std::string text = "subject " + oper + " " + (encoded ? "encoded(" : "") + "[";
        for (std::size_t i = 0; i < needles.size(); ++i) {
            std::string quoted;
            for (char c : needles[i]) quoted += c == '\t' ? std::string("\\t") : std::string(1, c);
            text += (i ? ", \"" : "\"") + quoted + "\"";
        }
        text += std::string("]") + (encoded ? ")" : "");
        const auto expr = compile(text, self());
        const node& cmp = *expr->root;
        for (int v = 0; v < 50; ++v) {
            mime::parsed_message message;
            message.subject = random_text(12);
            context ctx;
            ctx.hook = hook_point::data;
            ctx.message = &message;
            bool expected = false;
            for (const auto& nd : cmp.needles) {
                const bool exact = cmp.case_sensitive || nd.exact;
                const std::string hay = exact ? message.subject : lower(message.subject);
                const std::string& n = exact ? nd.text : nd.lower;
                bool m = false;
                if (cmp.oper == op::contains) m = !n.empty() && hay.find(n) != std::string::npos;
                else if (cmp.oper == op::startswith) m = !n.empty() && hay.rfind(n, 0) == 0;
                else if (cmp.oper == op::endswith)
                    m = !n.empty() && hay.size() >= n.size() && hay.compare(hay.size() - n.size(), n.size(), n) == 0;
                else m = hay == n;
                expected = expected || m;
            }
            ASSERT_EQ(evaluate(*expr, ctx), expected) << text << " on [" << message.subject << "]";
        }
    }
}

// An attacker's recipients become the needles of `body contains $rcpt_to`: 1,000 of them (ten
// forms each with encoded()) against the largest body scanned must cost one pass over the body,
// not one per needle (that was ~needles x 4 MiB byte comparisons, seconds to minutes per message).
TEST(Evaluator, ManySessionValuesAgainstALargeBodyStayFast) {
    fixture f;
    f.ctx.rcpt_to.clear();
    for (int i = 0; i < 1000; ++i) f.ctx.rcpt_to.push_back("user" + std::to_string(100000 + i) + "@example.org");
    mime::parsed_message m;
    // Every line nearly names a recipient, so a needle-by-needle scan compares deep at each line.
    while (m.text_body.size() < (4u << 20)) m.text_body += "USER100999@example.or\r\n";
    f.ctx.message = &m;
    const auto plain = compile("body contains $rcpt_to", self());
    const auto encoded = compile("body contains encoded($rcpt_to)", self());
    auto timed = [&](const expression& expr) {
        const auto start = std::chrono::steady_clock::now();
        const bool result = evaluate(expr, f.ctx);
        const auto elapsed = std::chrono::steady_clock::now() - start;
        EXPECT_LT(elapsed, relaybait::rules::testing::time_bound(1000));
        std::cout << "  " << std::chrono::duration<double, std::milli>(elapsed).count() << " ms\n";
        return result;
    };
    const auto left_out = dynamic_values_left_out();
    EXPECT_FALSE(timed(*plain));
    EXPECT_FALSE(timed(*encoded));
    const std::string body = m.text_body;
    m.text_body = body + "bcc: User100999@Example.ORG\r\n";  // the last recipient, any case
    EXPECT_TRUE(timed(*plain));
    EXPECT_TRUE(timed(*encoded));
    m.text_body = body + "ref " + text::base64_encode("user100500@example.org") + "\r\n";
    EXPECT_FALSE(timed(*plain));
    EXPECT_TRUE(timed(*encoded));
    EXPECT_EQ(dynamic_values_left_out(), left_out);  // 1,000 recipients fit in the bounds
}

TEST(Evaluator, SessionValuesPastTheBoundsAreLeftOut) {
    fixture f;
    // Values of max_dynamic_value_bytes: their encoded forms fill max_dynamic_needle_bytes after a few.
    auto recipient = [](int i) { return std::to_string(1000 + i) + std::string(max_dynamic_value_bytes - 4, 'x'); };
    f.ctx.rcpt_to.clear();
    for (int i = 0; i < 40; ++i) f.ctx.rcpt_to.push_back(recipient(i));
    mime::parsed_message m;
    f.ctx.message = &m;
    const auto encoded = compile("body contains encoded($rcpt_to)", self());
    const auto plain = compile("body contains $rcpt_to", self());
    const auto before = dynamic_values_left_out();
    m.text_body = "first: " + recipient(0);
    EXPECT_TRUE(evaluate(*encoded, f.ctx));  // the first values are kept
    EXPECT_EQ(dynamic_values_left_out(), before + 1);
    m.text_body = "last: " + recipient(39);
    EXPECT_FALSE(evaluate(*encoded, f.ctx));  // past max_dynamic_needle_bytes: not looked for
    EXPECT_TRUE(evaluate(*plain, f.ctx));     // 40 x 4 KiB plain needles fit
    EXPECT_EQ(dynamic_values_left_out(), before + 2);
    // A value longer than max_dynamic_value_bytes is never a needle (as before).
    f.ctx.rcpt_to = {std::string(max_dynamic_value_bytes + 1, 'y')};
    m.text_body = f.ctx.rcpt_to[0];
    EXPECT_FALSE(evaluate(*plain, f.ctx));
    // Past max_dynamic_needles values.
    f.ctx.rcpt_to.clear();
    for (std::size_t i = 0; i <= max_dynamic_needles; ++i) f.ctx.rcpt_to.push_back("r" + std::to_string(100000 + i));
    m.text_body = "r100000 and r" + std::to_string(100000 + max_dynamic_needles);
    EXPECT_TRUE(evaluate(*plain, f.ctx));
    m.text_body = "r" + std::to_string(100000 + max_dynamic_needles);
    EXPECT_FALSE(evaluate(*plain, f.ctx));
}

// The session needles of every operator, checked against a plain search for each.
TEST(Evaluator, SessionNeedlesMatchAsEachAlone) {
    std::mt19937 rng(9);
    const std::string alphabet = "aAbB01@.%=";
    auto random_text = [&](std::size_t min, std::size_t max) {
        std::string t;
        const std::size_t n = min + rng() % (max - min + 1);
        for (std::size_t i = 0; i < n; ++i) t += alphabet[rng() % alphabet.size()];
        return t;
    };
    const char* ops[] = {"contains", "contains_cs", "startswith", "endswith", "equals"};
    for (int round = 0; round < 300; ++round) {
        fixture f;
        mime::parsed_message m;
        f.ctx.message = &m;
        f.ctx.rcpt_to.clear();
        const int count = 1 + static_cast<int>(rng() % 5);
        for (int i = 0; i < count; ++i) f.ctx.rcpt_to.push_back(random_text(4, 6));
        m.text_body = random_text(0, 30);
        if (rng() % 2 == 0) m.text_body.insert(rng() % (m.text_body.size() + 1), f.ctx.rcpt_to[rng() % count]);
        const std::string oper = ops[rng() % std::size(ops)];
        const bool any = f.eval("body " + oper + " $rcpt_to");
        bool each = false;
        for (const auto& r : f.ctx.rcpt_to) each = each || f.eval("body " + oper + " \"" + r + "\"");  // no quotes in the alphabet
        ASSERT_EQ(any, each) << oper << " [" << m.text_body << "]";
    }
}
