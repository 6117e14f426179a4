// The keys the relay's caps count: one mailbox or one domain, one key, however a spammer
// spells it (subaddresses, internationalised domain names as U-labels or A-labels).
#include "relay/safety.hpp"

#include <gtest/gtest.h>

#include "test_support.hpp"
#include "wide_limits.hpp"

using namespace relaybait::relay;
using relay_test::temp_dir;

namespace {

relay_request probe_to(std::vector<std::string> recipients, int n) {
    relay_request r;
    r.message_id = "K" + std::to_string(n);
    r.file = "maildir/new/x";
    r.sha256 = "keys-sha-" + std::to_string(n);
    r.mail_from = "s" + std::to_string(n) + "@spam.example";
    r.recipients = std::move(recipients);
    r.client_ip = "192.0.2." + std::to_string(n);
    r.size = 100;
    return r;
}


}  // namespace

TEST(RelayAddressKeys, SubaddressIsTheSameMailbox) {
    EXPECT_EQ(canonical_address("victim+probe1@b.example"), "victim@b.example");
    EXPECT_EQ(canonical_address("Victim+A+B@B.example."), "victim@b.example");
    EXPECT_EQ(canonical_address("\"victim+x\"@b.example"), "victim@b.example");
    // A local part that starts with '+' has no base mailbox to fold into: kept whole.
    EXPECT_EQ(canonical_address("+probe@b.example"), "+probe@b.example");
    EXPECT_EQ(canonical_address("victim-probe@b.example"), "victim-probe@b.example");
}

TEST(RelayAddressKeys, InternationalisedDomainIsItsALabel) {
    EXPECT_EQ(address_domain("v@b\xc3\xbc" "cher.example"), "xn--bcher-kva.example");
    EXPECT_EQ(address_domain("v@B\xc3\x9c" "CHER.EXAMPLE."), "xn--bcher-kva.example");  // BÜCHER: case folded
    EXPECT_EQ(address_domain("v@XN--BCHER-KVA.example"), "xn--bcher-kva.example");
    EXPECT_EQ(canonical_address("V@b\xc3\xbc" "cher.example"), canonical_address("v@xn--bcher-kva.example"));
    // Not a valid name (a lone continuation byte, a disallowed code point): no domain.
    EXPECT_EQ(address_domain("v@b\x80" "d.example"), "");
    EXPECT_EQ(address_domain("v@a\xe2\x80\xae" "b.example"), "");  // U+202E RIGHT-TO-LEFT OVERRIDE
}

// Four probes to victim+1 .. victim+4 are four copies to one mailbox: the per-recipient cap
// of 3 refuses the fourth.
TEST(RelayAddressKeys, PerRecipientCapCountsEverySubaddressOfAMailbox) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.per_recipient_daily = 3;
    safety s(dir.path / "relaybait.db", limits);
    for (int i = 1; i <= 3; ++i) {
        const auto d = s.check_and_reserve(probe_to({"victim+" + std::to_string(i) + "@target.example"}, i));
        EXPECT_TRUE(d.allowed) << i << ": " << d.cap;
    }
    const auto fourth = s.check_and_reserve(probe_to({"Victim+4@target.example"}, 4));
    EXPECT_FALSE(fourth.allowed);
    EXPECT_EQ(fourth.cap, "per_recipient");
    // Two subaddresses in one request are one recipient: one queue row.
    safety again(dir.path / "relaybait.db", relay_test::wide_limits());
    const auto both = again.check_and_reserve(probe_to({"other+a@target.example", "other+b@target.example"}, 5));
    ASSERT_TRUE(both.allowed) << both.cap;
    EXPECT_EQ(both.queue_ids.size(), 1u);
}

// The per-domain cap counts bücher.example and xn--bcher-kva.example as one domain.
TEST(RelayAddressKeys, PerDomainCapCountsBothSpellingsOfAnInternationalisedDomain) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.per_domain_daily = 2;
    safety s(dir.path / "relaybait.db", limits);
    ASSERT_TRUE(s.check_and_reserve(probe_to({"a@b\xc3\xbc" "cher.example"}, 11)).allowed);
    ASSERT_TRUE(s.check_and_reserve(probe_to({"b@xn--bcher-kva.example"}, 12)).allowed);
    const auto third = s.check_and_reserve(probe_to({"c@B\xc3\x9c" "CHER.example"}, 13));
    EXPECT_FALSE(third.allowed);
    EXPECT_EQ(third.cap, "per_domain");
}

TEST(RelayAddressKeys, ARecipientWhoseDomainIsNotAValidNameIsRefused) {
    temp_dir dir;
    safety s(dir.path / "relaybait.db", relay_test::wide_limits());
    const auto d = s.check_and_reserve(probe_to({"v@a\xe2\x80\xae" "b.example"}, 21));
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.cap, "bad_recipient");
}

// UTS #46 turns U+3002, U+FF0E and U+FF61 into '.': trailing ones are trailing dots (the same
// key as the plain domain), and a domain with an empty label is not a DNS name.
TEST(RelayAddressKeys, IdeographicAndFullwidthStopsAreDots) {
    EXPECT_EQ(address_domain("v@gmail.com\xe3\x80\x82"), "gmail.com");              // U+3002
    EXPECT_EQ(address_domain("v@gmail.com\xe3\x80\x82\xe3\x80\x82"), "gmail.com");  // two of them
    EXPECT_EQ(address_domain("v@gmail\xef\xbc\x8e" "com"), "gmail.com");             // U+FF0E
    EXPECT_EQ(address_domain("v@gmail\xef\xbd\xa1" "com."), "gmail.com");            // U+FF61
    EXPECT_EQ(address_domain("v@\xe3\x80\x82gmail.com"), "");                       // leading: empty label
    EXPECT_EQ(address_domain("v@ex\xc3\xa4mple..com"), "");                         // empty label inside
    EXPECT_EQ(canonical_address("Victim@gmail.com\xe3\x80\x82"), "victim@gmail.com");
}

TEST(RelayAddressKeys, OnlyDnsNamesAreDomains) {
    EXPECT_EQ(address_domain("v@gmail..com"), "");
    EXPECT_EQ(address_domain("v@.gmail.com"), "");
    EXPECT_EQ(address_domain("v@[192.0.2.1]"), "");
    EXPECT_EQ(address_domain("v@exa mple.com"), "");
    EXPECT_EQ(address_domain("v@" + std::string(64, 'a') + ".com"), "");  // a label over 63
    EXPECT_EQ(address_domain("v@" + std::string(63, 'a') + ".com"), std::string(63, 'a') + ".com");
    EXPECT_EQ(address_domain("v@_dmarc.example.com"), "_dmarc.example.com");
    EXPECT_EQ(address_domain("v@mx-1.example.com."), "mx-1.example.com");
}

// victim@gmail.com, victim@gmail.com。 and victim@gmail.com。。 are one mailbox of one domain.
TEST(RelayAddressKeys, CapsCountADomainWrittenWithIdeographicStopsOnce) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.per_recipient_daily = 1;
    limits.per_domain_daily = 2;
    safety s(dir.path / "relaybait.db", limits);
    ASSERT_TRUE(s.check_and_reserve(probe_to({"victim@gmail.com"}, 31)).allowed);
    int n = 40;
    for (const char* spelling : {"victim@gmail.com\xe3\x80\x82", "victim@gmail.com\xe3\x80\x82\xe3\x80\x82",
                                 "victim@gmail\xef\xbc\x8e" "com"}) {
        const auto d = s.check_and_reserve(probe_to({spelling}, ++n));
        EXPECT_FALSE(d.allowed) << spelling;
        EXPECT_EQ(d.cap, "per_recipient") << spelling;
    }
    ASSERT_TRUE(s.check_and_reserve(probe_to({"other@gmail.com"}, 33)).allowed);
    const auto third = s.check_and_reserve(probe_to({"third@gmail.com\xe3\x80\x82"}, 34));
    EXPECT_FALSE(third.allowed);
    EXPECT_EQ(third.cap, "per_domain");
    const auto leading = s.check_and_reserve(probe_to({"v@\xe3\x80\x82gmail.com"}, 35));
    EXPECT_FALSE(leading.allowed);
    EXPECT_EQ(leading.cap, "bad_recipient");
}

// Sizes are checked before libidn2 sees an address: a 70,000-byte recipient is refused as
// bad_recipient, and a sender as long is bounded, not refused or fatal.
TEST(RelayAddressKeys, OversizedAddressesAreBoundedBeforeTheyAreCanonicalised) {
    temp_dir dir;
    safety s(dir.path / "relaybait.db", relay_test::wide_limits());
    const auto huge_rcpt = s.check_and_reserve(probe_to({std::string(70000, 'a') + "@b\xc3\xbc" "cher.example"}, 51));
    EXPECT_FALSE(huge_rcpt.allowed);
    EXPECT_EQ(huge_rcpt.cap, "bad_recipient");
    auto long_sender = probe_to({"v@target.example"}, 52);
    long_sender.mail_from = std::string(70000, 's') + "@spam.example";
    const auto d = s.check_and_reserve(long_sender);
    EXPECT_TRUE(d.allowed) << d.cap;
    EXPECT_EQ(s.db().counter(utc_day(std::chrono::system_clock::now()), "sender", std::string(320, 's')), 1u);  // no '@' left in the first 320 bytes
}
