// The shipped rules.example.toml on probe samples (each must hit the expected rule) and on
// ordinary spam (must hit none).
#include <gtest/gtest.h>

#include "mime/message.hpp"
#include "rules/encodings.hpp"
#include "rules/rules.hpp"

using namespace relaybait;
using namespace relaybait::rules;

namespace {

self_identity self() {
    self_identity s;
    s.ipv4 = {"198.51.100.23"};
    s.ipv6 = {"2001:db8:5::25"};
    s.hostname = "mail.relay-victim.example";
    s.ports = {25, 465, 587};
    return s;
}

const rule_set& defaults() {
    static const rule_set set = rule_set::load(RELAYBAIT_SOURCE_DIR "/rules.example.toml", self());
    return set;
}

struct sample {
    std::string raw;
    std::string user;
    std::string password;
};

// Name of the deciding rule at DATA end, or "" when none matches.
std::string decide(const sample& s) {
    const auto message = mime::parse(s.raw);
    context ctx;
    ctx.hook = hook_point::data;
    ctx.client_ip = "203.0.113.50";
    ctx.listener = "smtp";
    ctx.helo = "spammer.example";
    ctx.auth_user = s.user;
    ctx.auth_password = s.password;
    ctx.mail_from = "spammer@bulk.example";
    ctx.rcpt_to = {"checker@gmail.com"};
    ctx.message = &message;
    ctx.size = s.raw.size();
    const rule* hit = defaults().first_match(ctx);
    return hit != nullptr ? hit->name : "";
}

std::string msg(const std::string& headers, const std::string& body) {
    return "From: <spammer@bulk.example>\r\nTo: <checker@gmail.com>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n" +
           headers + "\r\n" + body;
}

std::string filler(int lines) {
    std::string text;
    for (int i = 0; i < lines; ++i) text += "Lorem ipsum dolor sit amet, line " + std::to_string(i) + "\r\n";
    return text;
}

}  // namespace

TEST(DefaultRules, LoadCleanly) {
    const auto& set = defaults();
    EXPECT_GE(set.rules().size(), 5u);
    for (const auto& w : set.warnings()) ADD_FAILURE() << w.to_string();
    for (const auto& r : set.rules()) {
        if (r.kind != "probe") {
            EXPECT_FALSE(r.enabled) << r.name << ": examples ship disabled";
            continue;
        }
        EXPECT_TRUE(r.enabled) << r.name;
        EXPECT_EQ(r.actions.folder, "Probes") << r.name;
        EXPECT_TRUE(r.actions.relay) << r.name;
        EXPECT_EQ(r.hook, hook_point::data) << r.name;
    }
}

TEST(DefaultRules, IpInSubject) {
    EXPECT_EQ(decide({msg("Subject: Relay test 198.51.100.23\r\n", "hi\r\n")}), "probe-ip-in-subject");
    EXPECT_EQ(decide({msg("Subject: =?UTF-8?B?VGVzdCAxOTguNTEuMTAwLjIz?=\r\n", "hi\r\n")}), "probe-ip-in-subject");
    EXPECT_EQ(decide({msg("Subject: open relay " + base64_encode("ip=198.51.100.23:25") + "\r\n", "hi\r\n")}),
              "probe-ip-in-subject");
    EXPECT_EQ(decide({msg("Subject: 2001:db8:5::25 works\r\n", "hi\r\n")}), "probe-ip-in-subject");
    EXPECT_EQ(decide({msg("Subject: check [198.051.100.023]\r\n", "hi\r\n")}), "probe-ip-in-subject");
}

TEST(DefaultRules, IpInHeader) {
    EXPECT_EQ(decide({msg("Subject: hello\r\nX-Relay-Server: 198.51.100.23\r\n", "hi\r\n")}), "probe-ip-in-header");
    EXPECT_EQ(decide({msg("Subject: hello\r\nMessage-ID: <1234.3139382e35312e3130302e3233@x>\r\n", "hi\r\n")}),
              "probe-ip-in-header");
    EXPECT_EQ(decide({msg("Subject: hello\r\nX-Info: 32.001.15.891\r\n", "hi\r\n")}), "probe-ip-in-header");
}

TEST(DefaultRules, IpInBodyTail) {
    // base64 of a text holding the IP at each of the three byte offsets
    const std::string prefixes[] = {"", "x", "ab"};
    for (const auto& prefix : prefixes) {
        const std::string token = base64_encode(prefix + "198.51.100.23:587 user pass");
        EXPECT_EQ(decide({msg("Subject: hello\r\n", filler(30) + "id: " + token + "\r\n")}), "probe-ip-in-body-tail")
            << prefix.size();
    }
    EXPECT_EQ(decide({msg("Subject: hello\r\n", filler(30) + "server 198.51.100.23\r\n" + filler(5))}),
              "probe-ip-in-body-tail");
    EXPECT_EQ(decide({msg("Subject: hello\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
                          base64_encode(filler(40) + "relay=198.51.100.23\r\n") + "\r\n")}),
              "probe-ip-in-body-tail");
    EXPECT_EQ(decide({msg("Subject: hello\r\n", filler(3) + "http://x.example/?r=198%2E51%2E100%2E23\r\n")}), "")
        << "only full %XX or standard URL encoding are listed: '.' is not escaped by standard encoders";
    EXPECT_EQ(decide({msg("Subject: hello\r\n", filler(3) + "http://x.example/?r=%31%39%38%2E%35%31%2E%31%30%30%2E%32%33\r\n")}),
              "probe-ip-in-body-tail");
}

TEST(DefaultRules, CredentialsEchoed) {
    EXPECT_EQ(decide({msg("Subject: hello\r\n", "SMTP works: admin@victim.example / Pa55word!\r\n"), "admin@victim.example",
                      "Pa55word!"}),
              "probe-credentials-echoed");
    EXPECT_EQ(decide({msg("Subject: login Pa55word!\r\n", "ok\r\n"), "someone", "Pa55word!"}), "probe-credentials-echoed");
    EXPECT_EQ(decide({msg("Subject: ok\r\nContent-Type: text/html\r\n", "<p>user: someone-long</p>\r\n"), "someone-long",
                      "zzzzzzzz"}),
              "probe-credentials-echoed");
}

TEST(DefaultRules, TestToken) {
    EXPECT_EQ(decide({msg("Subject: relaybait-test-7f3a\r\n", "hi\r\n")}), "probe-test-token");
    EXPECT_EQ(decide({msg("Subject: hi\r\nX-Check: RELAYBAIT-TEST-7F3A\r\n", "hi\r\n")}), "probe-test-token");
    EXPECT_EQ(decide({msg("Subject: hi\r\n", filler(50) + "token relaybait-test-7f3a\r\n" + filler(50))}), "probe-test-token");
}

TEST(DefaultRules, OrdinarySpamIsNotAProbe) {
    // Bulk spam, other IPs, the relay's IP far from the end of a long body, short or absent credentials.
    EXPECT_EQ(decide({msg("Subject: Cheap meds 50% off\r\nX-Mailer: PHPMailer 6.1\r\n",
                          "Visit http://203.0.113.80/shop now!\r\n" + filler(10))}),
              "");
    EXPECT_EQ(decide({msg("Subject: Your invoice\r\nContent-Type: multipart/mixed; boundary=b\r\n",
                          "--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\nContent-Type: application/zip\r\n"
                          "Content-Disposition: attachment; filename=invoice.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                          "UEsDBAoAAAAAAA==\r\n--b--\r\n")}),
              "");
    EXPECT_EQ(decide({msg("Subject: newsletter\r\n", "IP 198.51.100.23 mentioned early\r\n" + filler(40))}), "");
    EXPECT_EQ(decide({msg("Subject: a b c\r\n", "a b c d e\r\n"), "a", "b"}), "");  // credentials too short to count
    EXPECT_EQ(decide({msg("Subject: hello\r\n", "nothing to see\r\n"), "admin@victim.example", "Pa55word!"}), "");
    EXPECT_EQ(decide({msg("Subject: 198.51.100.2 and 198.51.10.23\r\n", "close but different addresses\r\n")}), "");
    EXPECT_EQ(decide({msg("Subject: Votre colis =?ISO-8859-1?Q?=E0_livrer?=\r\n", "Cliquez ici: http://track.example/\r\n")}), "");
    EXPECT_EQ(decide({""}), "");
    EXPECT_EQ(decide({"garbage without headers"}), "");
}

TEST(DefaultRules, DisabledExamplesWorkWhenEnabled) {
    // Turn every rule on by rewriting "enabled = false": the examples then match their samples.
    std::string text;
    {
        std::FILE* f = std::fopen(RELAYBAIT_SOURCE_DIR "/rules.example.toml", "rb");
        ASSERT_NE(f, nullptr);
        char buffer[4096];
        std::size_t n;
        while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) text.append(buffer, n);
        std::fclose(f);
    }
    for (std::size_t at; (at = text.find("enabled = false")) != std::string::npos;) text.replace(at, 15, "enabled = true");
    const auto set = rule_set::parse(text, "all.toml", self());
    auto m = mime::parse(msg("Subject: Please verify your account now\r\n", "hi\r\n"));
    context ctx;
    ctx.message = &m;
    ASSERT_NE(set.first_match(ctx), nullptr);
    EXPECT_EQ(set.first_match(ctx)->name, "phishing-account-keywords");
    m = mime::parse(msg("Subject: docs\r\nContent-Type: multipart/mixed; boundary=b\r\n",
                        "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=run.JS\r\n\r\nx\r\n--b--\r\n"));
    EXPECT_EQ(set.first_match(ctx)->name, "malware-archive-attachment");
    context connect;
    connect.hook = hook_point::connect;
    connect.client_ip = "192.0.2.99";
    ASSERT_NE(set.first_match(connect), nullptr);
    EXPECT_EQ(set.first_match(connect)->actions.tarpit.count(), 5000);
    context rcpt;
    rcpt.hook = hook_point::rcpt;
    rcpt.rcpt_to.assign(51, "x@example.com");
    ASSERT_NE(set.first_match(rcpt), nullptr);
    EXPECT_EQ(set.first_match(rcpt)->actions.reply->code, 451);
}
