#include "relay/safety.hpp"

#include <gtest/gtest.h>

#include <sqlite3.h>

#include <atomic>
#include <set>
#include <thread>

#include "test_support.hpp"
#include "wide_limits.hpp"

using namespace relaybait::relay;
using relay_test::temp_dir;

namespace {

int seq = 0;

relay_request probe(std::string rcpt = "", std::string from = "", std::string ip = "") {
    ++seq;
    relay_request r;
    r.message_id = "M" + std::to_string(seq);
    r.file = "maildir/new/x";
    r.sha256 = "sha" + std::to_string(seq) + "-" + std::to_string(reinterpret_cast<std::uintptr_t>(&r));
    r.mail_from = from.empty() ? "s" + std::to_string(seq) + "@spam.example" : from;
    r.recipients = {rcpt.empty() ? "r" + std::to_string(seq) + "@d" + std::to_string(seq) + ".example" : rcpt};
    r.client_ip = ip.empty() ? "192.0.2." + std::to_string(seq % 250) + "-" + std::to_string(seq) : ip;
    r.size = 100;
    return r;
}


}  // namespace

TEST(RelaySafety, DailyCapIsExactAndPersistsAcrossReopen) {
    temp_dir dir;
    relay_limits limits;  // defaults: daily 20
    {
        safety s(dir.path / "relaybait.db", limits);
        for (int i = 0; i < 20; ++i) {
            const auto d = s.check_and_reserve(probe());
            ASSERT_TRUE(d.allowed) << i << " " << d.cap;
            EXPECT_EQ(d.queue_ids.size(), 1u);
        }
        const auto d21 = s.check_and_reserve(probe());
        EXPECT_FALSE(d21.allowed);
        EXPECT_EQ(d21.cap, "daily");
        EXPECT_EQ(s.daily_count(), 20u);
    }
    safety again(dir.path / "relaybait.db", limits);  // a restart
    EXPECT_EQ(again.daily_count(), 20u);
    EXPECT_EQ(again.check_and_reserve(probe()).cap, "daily");
    // Tomorrow (UTC) is a new day.
    const auto tomorrow = std::chrono::system_clock::now() + std::chrono::hours(24);
    EXPECT_TRUE(again.check_and_reserve(probe(), tomorrow).allowed);
    EXPECT_EQ(again.db().list_queue().size(), 21u);
    EXPECT_EQ(again.db().list_decisions().size(), 23u);
    // The queue rows of each day (what the daily .Logs message lists), oldest first.
    const auto today_rows = again.db().queue_of_day(utc_day(std::chrono::system_clock::now()));
    ASSERT_EQ(today_rows.size(), 20u);
    EXPECT_LT(today_rows.front().id, today_rows.back().id);
    const auto tomorrow_rows = again.db().queue_of_day(utc_day(tomorrow));
    ASSERT_EQ(tomorrow_rows.size(), 1u);
    EXPECT_EQ(tomorrow_rows[0].id, again.db().list_queue().front().id);
    EXPECT_TRUE(again.db().queue_of_day("2000-01-01").empty());
}

TEST(RelaySafety, DailyCountsEveryRecipientAndIsAllOrNothing) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.daily = 5;
    safety s(dir.path / "relaybait.db", limits);
    auto r = probe();
    r.recipients = {"a@x.example", "b@y.example", "A@X.example", "c@z.example"};  // A@X duplicate of a@x
    const auto d = s.check_and_reserve(r);
    ASSERT_TRUE(d.allowed);
    EXPECT_EQ(d.queue_ids.size(), 3u);
    EXPECT_EQ(s.daily_count(), 3u);
    auto r2 = probe();
    r2.recipients = {"d@x1.example", "e@x2.example", "f@x3.example"};
    EXPECT_EQ(s.check_and_reserve(r2).cap, "daily");  // 3 + 3 > 5: nothing reserved
    EXPECT_EQ(s.daily_count(), 3u);
    auto r3 = probe();
    r3.recipients = {"d@x1.example", "e@x2.example"};
    EXPECT_TRUE(s.check_and_reserve(r3).allowed);
    EXPECT_EQ(s.daily_count(), 5u);
}

TEST(RelaySafety, PerRecipientCap) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.per_recipient_daily = 3;
    safety s(dir.path / "relaybait.db", limits);
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(s.check_and_reserve(probe("victim@target.example")).allowed);
    EXPECT_EQ(s.check_and_reserve(probe("Victim@Target.example")).cap, "per_recipient");
    EXPECT_TRUE(s.check_and_reserve(probe("other@target.example")).allowed);
}

TEST(RelaySafety, PerSenderCap) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.per_sender_daily = 5;
    safety s(dir.path / "relaybait.db", limits);
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(s.check_and_reserve(probe("", "spammer@evil.example")).allowed);
    EXPECT_EQ(s.check_and_reserve(probe("", "SPAMMER@evil.example")).cap, "per_sender");
    EXPECT_TRUE(s.check_and_reserve(probe("", "other@evil.example")).allowed);
}

TEST(RelaySafety, PerClientIpCap) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.per_client_ip_daily = 5;
    safety s(dir.path / "relaybait.db", limits);
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(s.check_and_reserve(probe("", "", "203.0.113.7")).allowed);
    EXPECT_EQ(s.check_and_reserve(probe("", "", "203.0.113.7")).cap, "per_client_ip");
    EXPECT_TRUE(s.check_and_reserve(probe("", "", "203.0.113.8")).allowed);
}

TEST(RelaySafety, PerDomainCap) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.per_domain_daily = 10;
    safety s(dir.path / "relaybait.db", limits);
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(s.check_and_reserve(probe("u" + std::to_string(i) + "@gmail.example")).allowed);
    EXPECT_EQ(s.check_and_reserve(probe("u99@GMAIL.example.")).cap, "per_domain");
    EXPECT_TRUE(s.check_and_reserve(probe("u99@other.example")).allowed);
}

TEST(RelaySafety, SizeCap) {
    temp_dir dir;
    safety s(dir.path / "relaybait.db", relay_limits{});
    auto r = probe();
    r.size = (1u << 20) + 1;
    EXPECT_EQ(s.check_and_reserve(r).cap, "size");
    auto ok = probe();
    ok.size = 1u << 20;
    EXPECT_TRUE(s.check_and_reserve(ok).allowed);
}

TEST(RelaySafety, RecipientsCap) {
    temp_dir dir;
    safety s(dir.path / "relaybait.db", relay_test::wide_limits());
    auto r = probe();
    r.recipients = {"a@1.example", "b@2.example", "c@3.example", "d@4.example", "e@5.example", "f@6.example"};
    EXPECT_EQ(s.check_and_reserve(r).cap, "recipients");
    r.recipients.pop_back();
    EXPECT_TRUE(s.check_and_reserve(r).allowed);
    EXPECT_EQ(s.daily_count(), 5u);
}

TEST(RelaySafety, IdenticalMessageOnlyOnceEvenManual) {
    temp_dir dir;
    safety s(dir.path / "relaybait.db", relay_test::wide_limits());
    auto r = probe();
    r.sha256 = "ABCDEF";
    EXPECT_TRUE(s.check_and_reserve(r).allowed);
    auto again = probe();
    again.sha256 = "abcdef";
    again.manual = true;
    EXPECT_EQ(s.check_and_reserve(again).cap, "identical");
    auto no_hash = probe();
    no_hash.sha256.clear();
    EXPECT_EQ(s.check_and_reserve(no_hash).cap, "identical");  // unknown content is never relayed
}

TEST(RelaySafety, PausedAndDisabledAndBadRecipients) {
    temp_dir dir;
    {
        safety s(dir.path / "relaybait.db", relay_test::wide_limits());
        s.set_paused(true);
        EXPECT_EQ(s.check_and_reserve(probe()).cap, "paused");
    }
    {
        safety s(dir.path / "relaybait.db", relay_test::wide_limits());  // the pause is persisted (CLI -> server)
        EXPECT_TRUE(s.paused());
        EXPECT_EQ(s.check_and_reserve(probe()).cap, "paused");
        s.set_paused(false);
        EXPECT_TRUE(s.check_and_reserve(probe()).allowed);
        auto bad = probe();
        bad.recipients = {"no-at-sign"};
        EXPECT_EQ(s.check_and_reserve(bad).cap, "bad_recipient");
        bad.recipients = {};
        EXPECT_EQ(s.check_and_reserve(bad).cap, "no_recipients");
    }
    relay_limits off = relay_test::wide_limits();
    off.enabled = false;
    safety s(dir.path / "relaybait.db", off);
    EXPECT_EQ(s.check_and_reserve(probe()).cap, "disabled");
    EXPECT_EQ(s.daily_count(), 1u);
}

TEST(RelaySafety, ConcurrentConnectionsNeverExceedTheDailyCap) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.daily = 20;
    { safety init(dir.path / "relaybait.db", limits); }
    std::atomic<int> allowed{0}, refused{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            safety s(dir.path / "relaybait.db", limits);  // its own connection
            for (int i = 0; i < 500; ++i) {
                relay_request r;
                r.message_id = std::to_string(t) + "-" + std::to_string(i);
                r.sha256 = "h" + r.message_id;
                r.mail_from = "s" + r.message_id + "@x.example";
                r.recipients = {"r" + r.message_id + "@y" + r.message_id + ".example"};
                r.client_ip = "ip" + r.message_id;
                r.size = 10;
                (s.check_and_reserve(r).allowed ? allowed : refused)++;
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(allowed.load(), 20);
    EXPECT_EQ(refused.load(), 8 * 500 - 20);
    safety s(dir.path / "relaybait.db", limits);
    EXPECT_EQ(s.daily_count(), 20u);
    EXPECT_EQ(s.db().list_queue(10'000).size(), 20u);
}

TEST(RelayDb, CountsTheWholeQueueByState) {
    temp_dir dir;
    safety s(dir.path / "relaybait.db", relay_test::wide_limits());
    EXPECT_TRUE(s.db().count_queue_by_state().empty());
    for (int i = 0; i < 6; ++i) ASSERT_TRUE(s.check_and_reserve(probe()).allowed);
    const auto now = std::chrono::system_clock::now();
    const auto claimed = s.db().claim_due(now, std::chrono::seconds(60), 5, 4);
    ASSERT_EQ(claimed.size(), 4u);
    s.db().finish(claimed[0].id, "delivered", 1, 0, "250 ok", "", now);
    s.db().finish(claimed[1].id, "failed", 1, 0, "550 no", "", now);
    s.db().finish(claimed[2].id, "deferred", 1, unix_seconds(now) + 60, "451 later", "", now);
    const std::map<std::string, std::uint64_t> expected{
        {"queued", 2}, {"sending", 1}, {"deferred", 1}, {"delivered", 1}, {"failed", 1}};
    EXPECT_EQ(s.db().count_queue_by_state(), expected);
    // A state this build does not know (a newer version's) is counted under its own name.
    sqlite3_exec(s.db().handle(), "UPDATE relay_queue SET state = 'parked' WHERE state = 'failed'", nullptr, nullptr, nullptr);
    const std::map<std::string, std::uint64_t> with_unknown{
        {"queued", 2}, {"sending", 1}, {"deferred", 1}, {"delivered", 1}, {"parked", 1}};
    EXPECT_EQ(s.db().count_queue_by_state(), with_unknown);
}

TEST(RelaySafety, CanonicalAddressIsOneKeyPerMailbox) {
    EXPECT_EQ(canonical_address("v@b.example"), "v@b.example");
    EXPECT_EQ(canonical_address("V@B.Example."), "v@b.example");
    EXPECT_EQ(canonical_address("v@b.example.."), "v@b.example");
    EXPECT_EQ(canonical_address("\"v\"@b.example"), "v@b.example");
    EXPECT_EQ(canonical_address("\"\\v\"@b.example"), "v@b.example");
    EXPECT_EQ(canonical_address("\"a\\\"b@c\"@x.example"), "a\"b@c@x.example");
    EXPECT_EQ(canonical_address("postmaster"), "postmaster");
}

// v@b.example, v@b.example., "v"@b.example and "\v"@B.EXAMPLE are one mailbox: one count.
TEST(RelaySafety, PerRecipientCapCountsTheMailboxWhateverItsSpelling) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.per_recipient_daily = 1;
    safety s(dir.path / "relaybait.db", limits);
    ASSERT_TRUE(s.check_and_reserve(probe("v@b.example")).allowed);
    for (const char* spelling : {"v@b.example.", "V@B.EXAMPLE", "\"v\"@b.example", "\"\\v\"@B.example..", "v@b.example"}) {
        const auto d = s.check_and_reserve(probe(spelling));
        EXPECT_FALSE(d.allowed) << spelling;
        EXPECT_EQ(d.cap, "per_recipient") << spelling;
    }
    EXPECT_TRUE(s.check_and_reserve(probe("w@b.example")).allowed);
    // Two spellings in one request are one recipient (one queue row, one count).
    limits.per_recipient_daily = 5;
    safety again(dir.path / "relaybait.db", limits);
    auto request = probe("x@b.example");
    request.recipients = {"x@b.example", "\"x\"@b.example."};
    const auto d = again.check_and_reserve(request);
    ASSERT_TRUE(d.allowed) << d.cap;
    EXPECT_EQ(d.queue_ids.size(), 1u);
    EXPECT_EQ(again.db().counter(utc_day(std::chrono::system_clock::now()), "recipient", "x@b.example"), 1u);
}

TEST(RelaySafety, ClientIpKeyIsTheIpv4AddressOrTheIpv6Slash64) {
    EXPECT_EQ(client_ip_key("198.51.100.7"), "198.51.100.7");
    EXPECT_EQ(client_ip_key("::ffff:198.51.100.7"), "198.51.100.7");
    EXPECT_EQ(client_ip_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
    EXPECT_EQ(client_ip_key("2001:DB8:1:2::1"), "2001:db8:1:2::/64");
    EXPECT_EQ(client_ip_key("2001:db8:1:3::1"), "2001:db8:1:3::/64");
    EXPECT_EQ(client_ip_key("not an address"), "not an address");
}

TEST(RelaySafety, PerClientIpCapCountsAnIpv6Slash64AsOneClient) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.per_client_ip_daily = 2;
    safety s(dir.path / "relaybait.db", limits);
    ASSERT_TRUE(s.check_and_reserve(probe("", "", "2001:db8:1:2::1")).allowed);
    ASSERT_TRUE(s.check_and_reserve(probe("", "", "2001:db8:1:2::2")).allowed);
    const auto third = s.check_and_reserve(probe("", "", "2001:db8:1:2:ffff:ffff:ffff:fffe"));
    EXPECT_FALSE(third.allowed);
    EXPECT_EQ(third.cap, "per_client_ip");
    EXPECT_TRUE(s.check_and_reserve(probe("", "", "2001:db8:1:3::1")).allowed);  // the next /64
    // An IPv4 client counts the same whether it came over IPv4 or as an IPv4-mapped address.
    ASSERT_TRUE(s.check_and_reserve(probe("", "", "198.51.100.7")).allowed);
    ASSERT_TRUE(s.check_and_reserve(probe("", "", "::ffff:198.51.100.7")).allowed);
    const auto mapped = s.check_and_reserve(probe("", "", "198.51.100.7"));
    EXPECT_FALSE(mapped.allowed);
    EXPECT_EQ(mapped.cap, "per_client_ip");
}

TEST(RelaySafety, TheQueueRowRecordsTestMode) {
    temp_dir dir;
    relay_limits limits = relay_test::wide_limits();
    limits.test_mode = true;
    const auto in_test_mode = safety(dir.path / "relaybait.db", limits).check_and_reserve(probe());
    limits.test_mode = false;
    safety s(dir.path / "relaybait.db", limits);
    const auto live = s.check_and_reserve(probe());
    ASSERT_TRUE(in_test_mode.allowed && live.allowed);
    EXPECT_TRUE(s.db().find_queue_row(in_test_mode.queue_ids.at(0))->test_mode);
    EXPECT_FALSE(s.db().find_queue_row(live.queue_ids.at(0))->test_mode);
    EXPECT_EQ(s.db().schema_version(), relay_db::latest_schema_version());
    EXPECT_GE(relay_db::latest_schema_version(), 4);
}

// Rows still waiting when a database is upgraded to the schema that records test mode were
// reserved by a build that did not record it: they count as test mode (fail closed).
TEST(RelaySafety, RowsWaitingAtTheUpgradeCountAsTestMode) {
    temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    std::int64_t waiting = 0, delivered = 0;
    {
        safety s(file, relay_test::wide_limits());
        waiting = s.check_and_reserve(probe()).queue_ids.at(0);
        delivered = s.check_and_reserve(probe("", "other@example.net")).queue_ids.at(0);
        s.db().finish(delivered, "delivered", 1, 0, "250 ok", "", std::chrono::system_clock::now());
    }
    {  // back to schema 3, as the previous release left it
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db,
                               "ALTER TABLE relay_queue DROP COLUMN test_mode; "
                               "DROP TABLE relay_published_limits; "  // migration 5
                               "DELETE FROM relay_schema_migrations WHERE version >= 4;",
                               nullptr, nullptr, nullptr),
                  SQLITE_OK)
            << sqlite3_errmsg(db);
        sqlite3_close(db);
    }
    safety upgraded(file, relay_test::wide_limits());
    EXPECT_TRUE(upgraded.db().find_queue_row(waiting)->test_mode);
    EXPECT_FALSE(upgraded.db().find_queue_row(delivered)->test_mode);
}

// Every claim counts an attempt; a row whose deliveries never finish (the process dies each
// time) is failed once it would pass max_attempts, never delivered again.
TEST(RelayDb, EachClaimCountsAnAttemptAndAnEndlessRowFails) {
    temp_dir dir;
    safety s(dir.path / "relaybait.db", relay_test::wide_limits());
    const auto d = s.check_and_reserve(probe());
    ASSERT_TRUE(d.allowed);
    const std::int64_t id = d.queue_ids.at(0);
    auto now = std::chrono::system_clock::now();
    for (unsigned attempt = 1; attempt <= 3; ++attempt) {
        const auto claimed = s.db().claim_due(now, std::chrono::seconds(10), 3);
        ASSERT_EQ(claimed.size(), 1u) << attempt;
        EXPECT_EQ(claimed[0].state, "sending");
        EXPECT_EQ(claimed[0].attempts, attempt);
        EXPECT_EQ(s.db().find_queue_row(id)->attempts, attempt);
        EXPECT_TRUE(s.db().claim_due(now, std::chrono::seconds(10), 3).empty());  // leased
        now += std::chrono::seconds(10);  // the lease runs out: the process "died"
    }
    const auto given_up = s.db().claim_due(now, std::chrono::seconds(10), 3);
    ASSERT_EQ(given_up.size(), 1u);
    EXPECT_EQ(given_up[0].state, "failed");
    EXPECT_EQ(given_up[0].attempts, 3u);
    const auto row = s.db().find_queue_row(id);
    EXPECT_EQ(row->state, "failed");
    EXPECT_EQ(row->attempts, 3u);
    EXPECT_NE(row->last_result.find("attempts exhausted (3 of max 3; the last never finished"), std::string::npos)
        << row->last_result;
    EXPECT_TRUE(s.db().claim_due(now + std::chrono::hours(1), std::chrono::seconds(10), 3).empty());
}

// A deferred row whose rounds all finished, with max_attempts lowered below its count since:
// failed with the attempts it really had, and nothing blamed on a hung or dead process.
TEST(RelayDb, ARowPastALoweredMaxAttemptsIsFailedWithoutBlamingAHungProcess) {
    temp_dir dir;
    safety s(dir.path / "relaybait.db", relay_test::wide_limits());
    const auto d = s.check_and_reserve(probe());
    ASSERT_TRUE(d.allowed);
    const std::int64_t id = d.queue_ids.at(0);
    auto now = std::chrono::system_clock::now();
    for (unsigned attempt = 1; attempt <= 3; ++attempt) {  // three rounds, each deferred (max_attempts 5)
        ASSERT_EQ(s.db().claim_due(now, std::chrono::seconds(10), 5).size(), 1u);
        s.db().finish(id, "deferred", attempt, unix_seconds(now), "451 4.7.1 try again later", "", now);
    }
    const auto given_up = s.db().claim_due(now, std::chrono::seconds(10), 2);  // the operator lowered it to 2
    ASSERT_EQ(given_up.size(), 1u);
    EXPECT_EQ(given_up[0].state, "failed");
    EXPECT_EQ(given_up[0].attempts, 3u);
    const auto row = s.db().find_queue_row(id);
    EXPECT_EQ(row->state, "failed");
    EXPECT_EQ(row->attempts, 3u);
    EXPECT_EQ(row->last_result, "attempts exhausted (3 of max 2); before: 451 4.7.1 try again later");
    EXPECT_EQ(row->last_result.find("hung"), std::string::npos) << row->last_result;
}

// The rows a process is delivering are never claimed again by it, whatever their lease says.
TEST(RelayDb, InFlightRowsAreNotClaimedAgain) {
    temp_dir dir;
    safety s(dir.path / "relaybait.db", relay_test::wide_limits());
    ASSERT_TRUE(s.check_and_reserve(probe()).allowed);
    ASSERT_TRUE(s.check_and_reserve(probe()).allowed);
    auto now = std::chrono::system_clock::now();
    const auto first = s.db().claim_due(now, std::chrono::seconds(10), 5, 1);
    ASSERT_EQ(first.size(), 1u);
    const std::set<std::int64_t> in_flight{first[0].id};
    now += std::chrono::hours(2);  // its lease long gone (a slow MX, or the clock jumped)
    const auto next = s.db().claim_due(now, std::chrono::seconds(10), 5, 64, in_flight);
    ASSERT_EQ(next.size(), 1u);
    EXPECT_NE(next[0].id, first[0].id);
    EXPECT_EQ(s.db().find_queue_row(first[0].id)->attempts, 1u);  // not counted again either
    const std::set<std::int64_t> both{first[0].id, next[0].id};
    EXPECT_TRUE(s.db().claim_due(now + std::chrono::hours(2), std::chrono::seconds(10), 5, 64, both).empty());
    EXPECT_FALSE(s.db().next_due_time(both).has_value());
    EXPECT_TRUE(s.db().next_due_time().has_value());
}
