// The server's published caps bind every other safety on the database (published_limits.hpp):
// a safety built with wide limits (a CLI `relaybait relay ID` without --config) applies, per
// cap, the stricter of its own and the published ones, inside its transaction.
#include "relay/published_limits.hpp"

#include <gtest/gtest.h>

#include <sqlite3.h>

#include "relay/safety.hpp"
#include "relay/sqlite_util.hpp"
#include "test_support.hpp"
#include "wide_limits.hpp"

using namespace relaybait::relay;
using relay_test::temp_dir;

namespace {

int seq = 0;

relay_request request(std::vector<std::string> recipients, std::string from = "") {
    ++seq;
    relay_request r;
    r.message_id = "P" + std::to_string(seq);
    r.file = "maildir/new/x";
    r.sha256 = "published-" + std::to_string(seq);
    r.mail_from = from.empty() ? "s" + std::to_string(seq) + "@spam.example" : from;
    r.recipients = std::move(recipients);
    r.client_ip = "192.0.2." + std::to_string(seq % 250);
    r.size = 100;
    return r;
}

std::string rcpt() { return "r" + std::to_string(seq + 1) + "@d" + std::to_string(seq + 1) + ".example"; }

// What a CLI without --config, or with a generous config, would build.
relay_limits wide() {
    relay_limits l = relay_test::wide_limits();
    l.max_recipients = 50;
    l.max_size = 10u << 20;
    return l;
}

// The server of the bug report: daily 2, per sender 1, one recipient, test mode.
relay_limits strict_server(bool enabled) {
    relay_limits l;
    l.enabled = enabled;
    l.daily = 2;
    l.per_sender_daily = 1;
    l.max_recipients = 1;
    l.test_mode = true;
    l.test_server = "127.0.0.1:2525";
    l.test_recipient = "operator@example.org";
    return l;
}

void publish(const std::filesystem::path& file, const relay_limits& limits, std::int64_t pid = 4242,
             const std::string& sensor = "sensor-a") {
    relay_db db(file);
    publish_limits(db, limits, sensor, pid);
}

}  // namespace

TEST(PublishedLimits, TheServersKillSwitchRefusesAWideSafety) {
    temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    publish(file, strict_server(false));
    safety cli(file, wide());
    const auto d = cli.check_and_reserve(request({rcpt()}));
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.cap, "disabled");
    EXPECT_TRUE(cli.db().list_queue().empty());
}

TEST(PublishedLimits, TheServersCapsRefuseAWideSafetyAndItsTestModeMarksTheRow) {
    temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    publish(file, strict_server(true));
    safety cli(file, wide());  // test mode off, wide caps

    // max_recipients 1 (the CLI's own: 50).
    const auto two = cli.check_and_reserve(request({"a@one.example", "b@two.example"}));
    EXPECT_FALSE(two.allowed);
    EXPECT_EQ(two.cap, "recipients");

    // Allowed: queued in test mode, as the server would have, though this safety's is off.
    const auto first = cli.check_and_reserve(request({rcpt()}, "same@spam.example"));
    ASSERT_TRUE(first.allowed) << first.cap;
    ASSERT_EQ(first.queue_ids.size(), 1u);
    EXPECT_TRUE(cli.db().find_queue_row(first.queue_ids[0])->test_mode);

    // per_sender 1 (the CLI's own: 1000).
    const auto again = cli.check_and_reserve(request({rcpt()}, "same@spam.example"));
    EXPECT_FALSE(again.allowed);
    EXPECT_EQ(again.cap, "per_sender");

    // daily 2 (the CLI's own: 1000).
    const auto second = cli.check_and_reserve(request({rcpt()}));
    ASSERT_TRUE(second.allowed) << second.cap;
    EXPECT_TRUE(cli.db().find_queue_row(second.queue_ids.at(0))->test_mode);
    const auto third = cli.check_and_reserve(request({rcpt()}));
    EXPECT_FALSE(third.allowed);
    EXPECT_EQ(third.cap, "daily");
    EXPECT_EQ(cli.daily_count(), 2u);
}

// The published row is read inside each check, not when the safety is built: a server that
// starts (and publishes) after the CLI opened the database still binds it.
TEST(PublishedLimits, PublishedAfterTheSafetyOpenedStillBinds) {
    temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    safety cli(file, wide());
    ASSERT_TRUE(cli.check_and_reserve(request({rcpt()})).allowed);
    publish(file, strict_server(false));
    EXPECT_EQ(cli.check_and_reserve(request({rcpt()})).cap, "disabled");
}

TEST(PublishedLimits, EachCapIsTheStricterOfTheTwo) {
    temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    relay_limits server = wide();  // a generous server...
    server.per_recipient_daily = 1;
    publish(file, server);
    relay_limits own = wide();  // ...and a CLI stricter on another cap
    own.per_domain_daily = 1;
    safety cli(file, own);
    ASSERT_TRUE(cli.check_and_reserve(request({"v@one.example"})).allowed);
    EXPECT_EQ(cli.check_and_reserve(request({"v@one.example"})).cap, "per_recipient");  // the server's
    EXPECT_EQ(cli.check_and_reserve(request({"w@one.example"})).cap, "per_domain");     // its own
    // Its own test mode marks the row even when the server's is off.
    own.test_mode = true;
    safety test_cli(file, own);
    const auto d = test_cli.check_and_reserve(request({"x@two.example"}));
    ASSERT_TRUE(d.allowed) << d.cap;
    EXPECT_TRUE(test_cli.db().find_queue_row(d.queue_ids.at(0))->test_mode);

    const auto combined = stricter_limits(wide(), strict_server(false));
    EXPECT_FALSE(combined.enabled);
    EXPECT_TRUE(combined.test_mode);
    EXPECT_EQ(combined.daily, 2u);
    EXPECT_EQ(combined.per_sender_daily, 1u);
    EXPECT_EQ(combined.max_recipients, 1u);
    EXPECT_EQ(combined.per_recipient_daily, relay_limits{}.per_recipient_daily);
    EXPECT_EQ(combined.max_size, relay_limits{}.max_size);
    EXPECT_EQ(combined.test_server, "127.0.0.1:2525");
    EXPECT_EQ(combined.test_recipient, "operator@example.org");
}

TEST(PublishedLimits, SurviveReopeningAndALaterPublishOverwrites) {
    temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    const auto at = std::chrono::system_clock::now();
    {
        relay_db db(file);
        EXPECT_FALSE(read_published_limits(db).has_value());  // nothing yet: own limits apply
        EXPECT_EQ(effective_limits(wide(), read_published_limits(db)).daily, 1000u);
        publish_limits(db, strict_server(false), "sensor-a", 111, at);
    }
    {
        relay_db reopened(file);  // a restart of the CLI (or a later command)
        const auto p = read_published_limits(reopened);
        ASSERT_TRUE(p.has_value());
        EXPECT_FALSE(p->limits.enabled);
        EXPECT_TRUE(p->limits.test_mode);
        EXPECT_EQ(p->limits.daily, 2u);
        EXPECT_EQ(p->limits.per_sender_daily, 1u);
        EXPECT_EQ(p->limits.max_recipients, 1u);
        EXPECT_EQ(p->limits.per_recipient_daily, relay_limits{}.per_recipient_daily);
        EXPECT_EQ(p->limits.max_size, relay_limits{}.max_size);
        EXPECT_EQ(p->limits.test_server, "127.0.0.1:2525");
        EXPECT_EQ(p->limits.test_recipient, "operator@example.org");
        EXPECT_EQ(p->pid, 111);
        EXPECT_EQ(p->sensor, "sensor-a");
        EXPECT_EQ(p->published_at.substr(0, 10), utc_day(at));
    }
    EXPECT_EQ(safety(file, wide()).check_and_reserve(request({rcpt()})).cap, "disabled");

    // The server restarts with another config: its start replaces the row.
    relay_limits later = wide();
    later.daily = 7;
    publish(file, later, 222, "sensor-b");
    relay_db db(file);
    const auto p = read_published_limits(db);
    ASSERT_TRUE(p.has_value());
    EXPECT_TRUE(p->limits.enabled);
    EXPECT_FALSE(p->limits.test_mode);
    EXPECT_EQ(p->limits.daily, 7u);
    EXPECT_EQ(p->limits.max_recipients, 50u);
    EXPECT_EQ(p->pid, 222);
    EXPECT_EQ(p->sensor, "sensor-b");
    {
        relaybait::relay::detail::stmt rows(db.handle(), "SELECT COUNT(*) FROM relay_published_limits");
        ASSERT_TRUE(rows.step());
        EXPECT_EQ(rows.i64(0), 1);
    }
    safety cli(file, wide());
    const auto d = cli.check_and_reserve(request({rcpt()}));
    ASSERT_TRUE(d.allowed) << d.cap;
    EXPECT_FALSE(cli.db().find_queue_row(d.queue_ids.at(0))->test_mode);
}

// A damaged row never loosens anything: a negative cap is 0, an odd switch value is off
// (enabled) or on (test mode).
TEST(PublishedLimits, ADamagedRowFailsClosed) {
    temp_dir dir;
    const auto file = dir.path / "relaybait.db";
    publish(file, wide());
    {
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db, "UPDATE relay_published_limits SET daily = -1, enabled = 2, test_mode = -5",
                               nullptr, nullptr, nullptr),
                  SQLITE_OK)
            << sqlite3_errmsg(db);
        sqlite3_close(db);
    }
    relay_db db(file);
    const auto p = read_published_limits(db);
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->limits.daily, 0u);
    EXPECT_FALSE(p->limits.enabled);
    EXPECT_TRUE(p->limits.test_mode);
    EXPECT_EQ(safety(file, wide()).check_and_reserve(request({rcpt()})).cap, "disabled");
    // Switched back on, the negative daily cap is 0: nothing goes.
    {
        relaybait::relay::detail::stmt fix(db.handle(), "UPDATE relay_published_limits SET enabled = 1");
        fix.run();
    }
    EXPECT_EQ(safety(file, wide()).check_and_reserve(request({rcpt()})).cap, "daily");
}
