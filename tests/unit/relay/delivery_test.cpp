#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <poll.h>
#include <sqlite3.h>

#include <atomic>
#include <future>
#include <set>

#include "events/event_log.hpp"
#include "relay/message.hpp"
#include "relay/relay_service.hpp"
#include "relay/resolver.hpp"
#include "relay/smtp_client.hpp"
#include "store/database.hpp"
#include "store/ingest.hpp"
#include "store/message_admin.hpp"
#include "test_support.hpp"

using namespace relaybait::relay;
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

const std::string body8 =
    "From: a@spam.example\r\nTo: b@example.test\r\nSubject: probe 198.51.100.7\r\n\r\n"
    "caf\xc3\xa9 \xff\xfe raw 8-bit\r\n.leading dot\r\n..two dots\r\n.\r\nlast line";

delivery_result send(const relay_test::fake_mta& mta, std::vector<std::string> rcpts, const std::string& message) {
    smtp_client_options o;
    o.helo_name = "sensor.test";
    o.command_timeout = std::chrono::milliseconds(5000);
    smtp_target target;
    target.ip = asio::ip::make_address("127.0.0.1");
    target.port = mta.port;
    target.host_name = "fake.test";
    auto bytes = std::make_shared<const std::string>(message);
    boost::asio::io_context io;
    auto future = boost::asio::co_spawn(io, deliver(target, "a@spam.example", rcpts, bytes, o), boost::asio::use_future);
    io.run();
    return future.get();
}

}  // namespace

TEST(RelayMessage, StripTraceBlockAndPayload) {
    const std::string original = "Subject: x\r\n\r\nbody\r\n";
    const std::string stored = "Received: from h (unknown [1.2.3.4])\r\n\tby me (Postfix) with ESMTP id ABC;\r\n\tdate\r\n"
                               "X-Relaybait-Session: 1\r\nX-Relaybait-Peer: 1.2.3.4:5\r\n" + original;
    EXPECT_EQ(strip_trace_block(stored), original);
    EXPECT_EQ(strip_trace_block(original), original);
    const std::string not_ours = "Received: from h\r\nSubject: x\r\n\r\n";
    EXPECT_EQ(strip_trace_block(not_ours), not_ours);
    EXPECT_EQ(smtp_data_payload(".a\r\nb\nc"), "..a\r\nb\r\nc\r\n.\r\n");
    EXPECT_EQ(smtp_data_payload("x\r\n"), "x\r\n.\r\n");
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(RelaySmtpClient, DeliversByteIdenticalWithStarttlsAnd8bit) {
    relay_test::fake_mta mta(true);
    const auto r = send(mta, {"b@example.test"}, body8);
    ASSERT_EQ(r.recipients.size(), 1u);
    EXPECT_EQ(r.recipients[0].outcome, delivery_outcome::delivered) << r.recipients[0].reply << " " << r.error;
    EXPECT_FALSE(r.tls_version.empty());
    EXPECT_FALSE(r.tls_verified);  // self-signed: recorded, delivered anyway
    ASSERT_EQ(mta.received(), 1u);
    EXPECT_EQ(relay_test::read_all(mta.out() / "1.eml"), body8 + "\r\n");  // final CRLF added
    const auto meta = boost::json::parse(relay_test::read_all(mta.out() / "1.json")).as_object();
    EXPECT_TRUE(meta.at("tls").as_bool());
    EXPECT_NE(boost::json::serialize(meta.at("mail_options")).find("BODY=8BITMIME"), std::string::npos);
    EXPECT_FALSE(r.transcript.empty());
    bool saw_ehlo = false;
    for (const auto& l : r.transcript) saw_ehlo = saw_ehlo || l.text == "EHLO sensor.test";
    EXPECT_TRUE(saw_ehlo);
}

TEST(RelaySmtpClient, PerRecipientResults) {
    relay_test::fake_mta mta(false);
    const auto r = send(mta, {"ok@example.test", "perm@example.test", "temp@example.test", "ok2@example.test"}, "Subject: x\r\n\r\nhi\r\n");
    std::map<std::string, delivery_outcome> by;
    for (const auto& x : r.recipients) by[x.recipient] = x.outcome;
    EXPECT_EQ(by["ok@example.test"], delivery_outcome::delivered);
    EXPECT_EQ(by["ok2@example.test"], delivery_outcome::delivered);
    EXPECT_EQ(by["perm@example.test"], delivery_outcome::permanent);
    EXPECT_EQ(by["temp@example.test"], delivery_outcome::temporary);
    EXPECT_TRUE(r.tls_version.empty());
}

TEST(RelaySmtpClient, ConnectionRefusedIsTemporary) {
    relay_test::fake_mta mta(false);
    mta.port = relay_test::free_port();
    const auto r = send(mta, {"b@example.test"}, "x\r\n");
    EXPECT_FALSE(r.connected);
    EXPECT_EQ(r.recipients.at(0).outcome, delivery_outcome::temporary);
}

namespace {

struct service_env {
    relay_test::temp_dir data;
    std::unique_ptr<relaybait::store::ingest> ingest;
    std::unique_ptr<relaybait::events::event_log> events;
    explicit service_env() {
        ingest = std::make_unique<relaybait::store::ingest>(relaybait::store::ingest_options{data.path, 256, false, "sensor.test"});
        events = std::make_unique<relaybait::events::event_log>(relaybait::events::event_log_options{data.path / "events.jsonl"});
    }
    relay_service_options options(const relay_test::fake_mta& mta) {
        relay_service_options o;
        o.data_dir = data.path;
        o.hostname = "sensor.test";
        o.limits.test_mode = true;
        o.limits.test_server = "127.0.0.1:" + std::to_string(mta.port);
        o.limits.test_recipient = "operator@example.test";
        o.dns.servers = {"127.0.0.1:" + std::to_string(relay_test::free_port())};  // nothing listens: MX lookup fails, recorded
        o.dns.timeout = std::chrono::milliseconds(100);
        o.dns.tries = 1;
        o.retry_base = std::chrono::seconds(1);
        o.poll_interval = std::chrono::milliseconds(100);
        o.client.command_timeout = std::chrono::milliseconds(5000);
        return o;
    }
    relay_request stored(const std::string& id, const std::string& rcpt, const std::string& body) {
        const fs::path file = data.path / ("stored-" + id);
        relay_test::write_all(file, "Received: from h (unknown [1.2.3.4])\r\n\tby me; date\r\nX-Relaybait-Session: s\r\n" + body);
        relay_request r;
        r.message_id = id;
        r.file = file.string();
        r.mail_from = "spammer@spam.example";
        r.recipients = {rcpt};
        r.client_ip = "198.51.100.7";
        return r;
    }
    std::string events_text() {
        events->flush();
        return relay_test::read_all(data.path / "events.jsonl");
    }
};

bool row_state(relay_db& db, const std::string& state, std::size_t n) {
    std::size_t k = 0;
    for (const auto& r : db.list_queue()) k += r.state == state;
    return k == n;
}

}  // namespace

TEST(RelayService, TestModeRedirectsAndStoresCopyAndLog) {
    relay_test::fake_mta mta(false);
    service_env env;
    relay_service service(env.options(mta), env.ingest.get(), env.events.get());
    service.start();
    service.submit(env.stored("m1", "victim@example.test", "Subject: probe\r\n\r\nhello\r\n"));
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "delivered", 1); }, std::chrono::seconds(20)));
    ASSERT_EQ(mta.received(), 1u);
    const auto meta = boost::json::parse(relay_test::read_all(mta.out() / "1.json")).as_object();
    EXPECT_EQ(meta.at("rcpt_tos").as_array().at(0).as_string(), "operator@example.test");  // never the victim
    EXPECT_EQ(relay_test::read_all(mta.out() / "1.eml"), "Subject: probe\r\n\r\nhello\r\n");  // trace headers stripped
    const auto attempts = service.db().list_attempts();
    ASSERT_EQ(attempts.size(), 1u);
    EXPECT_TRUE(attempts[0].test_mode);
    EXPECT_EQ(attempts[0].recipient, "victim@example.test");
    EXPECT_EQ(attempts[0].delivered_to, "operator@example.test");
    EXPECT_EQ(attempts[0].reply_code, 250);
    EXPECT_NE(attempts[0].transcript_json.find("MX example.test"), std::string::npos);  // the lookup was made
    ASSERT_TRUE(relay_test::wait_for([&] { return !service.db().list_queue().at(0).relayed_path.empty(); }, std::chrono::seconds(10)));
    const auto copy = relay_test::read_all(env.data.path / service.db().list_queue().at(0).relayed_path);
    EXPECT_NE(copy.find("X-Relaybait-Relay-Result: delivered"), std::string::npos);
    EXPECT_NE(copy.find("Subject: probe\r\n\r\nhello\r\n"), std::string::npos);
    std::size_t logs = 0;
    for (const auto& e : fs::directory_iterator(env.data.path / "maildir/.Logs/cur")) {
        ++logs;
        EXPECT_NE(relay_test::read_all(e.path()).find("1 of 20"), std::string::npos);
    }
    EXPECT_EQ(logs, 1u);  // one file per day, replaced
    const auto ev = env.events_text();
    EXPECT_NE(ev.find("relay.queued"), std::string::npos);
    EXPECT_NE(ev.find("relay.delivered"), std::string::npos);
    // The identical message is refused, and the refusal is an event.
    service.submit(env.stored("m1-again", "victim@example.test", "Subject: probe\r\n\r\nhello\r\n"));
    ASSERT_TRUE(relay_test::wait_for([&] { return env.events_text().find("\"cap\":\"identical\"") != std::string::npos; }, std::chrono::seconds(10)));
}

TEST(RelayService, TemporaryFailureIsRetriedThenDelivered_PermanentIsNot) {
    relay_test::fake_mta mta(false);
    service_env env;
    auto o = env.options(mta);
    o.limits.test_recipient = "temp-op@example.test";  // 451 the first time
    relay_service service(o, env.ingest.get(), env.events.get());
    service.start();
    service.submit(env.stored("m2", "victim@example.test", "Subject: t\r\n\r\nx\r\n"));
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "delivered", 1); }, std::chrono::seconds(30)));
    const auto attempts = service.db().list_attempts();
    ASSERT_EQ(attempts.size(), 2u);
    EXPECT_EQ(attempts[0].reply_code, 451);
    EXPECT_EQ(attempts[0].outcome, "temporary");
    EXPECT_EQ(attempts[1].outcome, "delivered");
    EXPECT_EQ(service.db().list_queue().at(0).attempts, 2u);
    EXPECT_NE(env.events_text().find("relay.deferred"), std::string::npos);
    service.stop();

    relay_test::fake_mta mta2(false);
    service_env env2;
    auto o2 = env2.options(mta2);
    o2.limits.test_recipient = "perm-op@example.test";
    relay_service service2(o2, env2.ingest.get(), env2.events.get());
    service2.start();
    service2.submit(env2.stored("m3", "victim@example.test", "Subject: p\r\n\r\nx\r\n"));
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service2.db(), "failed", 1); }, std::chrono::seconds(20)));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    EXPECT_EQ(service2.db().list_attempts().size(), 1u);  // no retry after 5xx
    EXPECT_NE(env2.events_text().find("relay.failed"), std::string::npos);
}

// No reply to the final dot: the MX may have taken the message (a stalling MX, the spammer's
// own say, would otherwise get one copy per attempt of one reservation). Failed, not retried.
TEST(RelayService, AMessageWhoseFinalDotIsNotAnsweredIsNotSentAgain) {
    relay_test::fake_mta mta(false);
    service_env env;
    auto o = env.options(mta);
    o.limits.test_recipient = "stall-op@example.test";
    o.client.data_timeout = std::chrono::milliseconds(1000);
    relay_service service(o, env.ingest.get(), env.events.get());
    service.start();
    service.submit(env.stored("m-stall", "victim@example.test", "Subject: s\r\n\r\nx\r\n"));
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "failed", 1); }, std::chrono::seconds(20)));
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // retry_base is 1 s: a retry would have come
    ASSERT_EQ(service.db().list_attempts().size(), 1u);
    EXPECT_EQ(service.db().list_attempts().at(0).outcome, "unknown");
    EXPECT_EQ(relay_test::read_all(mta.out() / "stalled"), "x");  // the message went out once
    EXPECT_NE(service.db().list_queue().at(0).last_result.find("may have been delivered"), std::string::npos);
}

TEST(RelayService, QueueSurvivesRestart) {
    relay_test::fake_mta mta(false);
    service_env env;
    auto o = env.options(mta);
    const auto good_server = o.limits.test_server;
    o.limits.test_server = "127.0.0.1:" + std::to_string(relay_test::free_port());  // down
    {
        relay_service first(o, env.ingest.get(), env.events.get());
        first.start();
        first.submit(env.stored("m4", "victim@example.test", "Subject: r\r\n\r\nx\r\n"));
        ASSERT_TRUE(relay_test::wait_for([&] { return row_state(first.db(), "deferred", 1); }, std::chrono::seconds(20)));
        first.stop();
    }
    o.limits.test_server = good_server;
    relay_service second(o, env.ingest.get(), env.events.get());
    second.start();
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(second.db(), "delivered", 1); }, std::chrono::seconds(20)));
    EXPECT_EQ(mta.received(), 1u);
    EXPECT_EQ(second.db().list_attempts().size(), 2u);
}

TEST(RelayService, PauseStopsDeliveriesAndFloodIsCappedExactly) {
    relay_test::fake_mta mta(false);
    service_env env;
    auto o = env.options(mta);
    o.limits.per_client_ip_daily = 100000;
    o.limits.per_sender_daily = 100000;
    o.limits.per_recipient_daily = 100000;
    o.limits.per_domain_daily = 100000;
    relay_service service(o, env.ingest.get(), env.events.get());
    service.start();
    service.pause();
    service.submit(env.stored("p0", "victim@example.test", "Subject: paused\r\n\r\nx\r\n"));
    ASSERT_TRUE(relay_test::wait_for([&] { return env.events_text().find("\"cap\":\"paused\"") != std::string::npos; }, std::chrono::seconds(10)));
    service.resume();
    // 50 parallel clients x 100 probe-shaped messages (5,000) submitted at once.
    std::vector<std::thread> clients;
    for (int c = 0; c < 50; ++c) {
        clients.emplace_back([&, c] {
            for (int i = 0; i < 100; ++i) {
                relay_request r;
                r.message_id = "f" + std::to_string(c) + "-" + std::to_string(i);
                r.file = "/nonexistent";  // never read: sha256 and size given
                r.sha256 = "sha-" + r.message_id;
                r.size = 50;
                r.mail_from = "s@spam.example";
                r.recipients = {"v" + std::to_string(i) + "@example.test"};
                r.client_ip = "198.51.100." + std::to_string(c);
                service.submit(std::move(r));
            }
        });
    }
    for (auto& t : clients) t.join();
    ASSERT_TRUE(relay_test::wait_for([&] { return service.db().list_decisions(10'000).size() == 5001; }, std::chrono::seconds(120)));
    std::size_t allowed = 0;
    for (const auto& d : service.db().list_decisions(10'000)) allowed += d.allowed;
    EXPECT_EQ(allowed, 20u);
    EXPECT_EQ(service.db().list_queue(10'000).size(), 20u);
}

// An idle service reads its queue only when the database changed (db_change_probe); rows
// queued by another process (the CLI's `relaybait relay ID`) are still seen, each after an
// idle spell long enough for the files' times to be old.
TEST(RelayService, AnIdleServiceSeesRowsQueuedByAnotherProcess) {
    relay_test::fake_mta mta(false);
    service_env env;
    relay_service service(env.options(mta), env.ingest.get(), env.events.get());
    service.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // idle polls; the files' times are now old

    safety cli(env.data.path / "relaybait.db", env.options(mta).limits);  // another connection, as the CLI's
    const auto by_hand = [&](const std::string& id, const std::string& rcpt) {
        auto request = env.stored(id, rcpt, "Subject: by hand " + id + "\r\n\r\nx\r\n");
        request.sha256 = "sha-" + id;  // the CLI hashes the file; the service would
        request.size = 30;
        request.manual = true;
        const auto d = cli.check_and_reserve(request);
        EXPECT_TRUE(d.allowed) << d.cap;
        return d.allowed;
    };
    ASSERT_TRUE(by_hand("cli1", "victim@example.test"));
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "delivered", 1); }, std::chrono::seconds(20)));
    EXPECT_EQ(mta.received(), 1u);

    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    ASSERT_TRUE(by_hand("cli2", "other@example.test"));
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "delivered", 2); }, std::chrono::seconds(20)));
    EXPECT_EQ(mta.received(), 2u);
}

namespace {

// A tarpit MX on 127.0.0.1: accepts every connection and never says a word (the slowest MX a
// delivery can meet). Counts connections, and the most it held open at once.
class tarpit {
public:
    tarpit() {
        listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener_, 16) != 0)
            throw std::runtime_error("tarpit: bind/listen");
        socklen_t len = sizeof a;
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
        thread_ = std::thread([this] { loop(); });
    }
    ~tarpit() {
        stop_ = true;
        thread_.join();
        for (int fd : open_) ::close(fd);
        ::close(listener_);
    }
    unsigned short port = 0;
    std::atomic<int> accepted{0};
    std::atomic<int> most_open{0};

private:
    void loop() {
        while (!stop_) {
            std::vector<pollfd> fds{{listener_, POLLIN, 0}};
            for (int fd : open_) fds.push_back({fd, POLLIN, 0});
            if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
            if (fds[0].revents & POLLIN) {
                const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
                if (fd >= 0) {
                    open_.push_back(fd);
                    ++accepted;
                }
            }
            for (std::size_t i = 1; i < fds.size(); ++i) {
                if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                char buffer[512];
                if (::recv(fds[i].fd, buffer, sizeof buffer, 0) <= 0) {  // the client gave up
                    ::close(fds[i].fd);
                    std::erase(open_, fds[i].fd);
                }
            }
            most_open = std::max<int>(most_open, static_cast<int>(open_.size()));
        }
    }
    int listener_ = -1;
    std::vector<int> open_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// dnsmasq answering for *.test: example.test's MX is mx.example.test = 127.0.0.1.
struct loopback_dns : relay_test::loopback_dns {
    loopback_dns()
        : relay_test::loopback_dns({"--mx-host=example.test,mx.example.test,10", "--host-record=mx.example.test,127.0.0.1"}) {}
};

}  // namespace

TEST(RelaySmtpClient, SessionDeadlineEndsASessionThePerStepTimeoutsWouldKeep) {
    tarpit pit;
    smtp_client_options o;
    o.command_timeout = std::chrono::seconds(30);
    o.session_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(800);
    smtp_target target;
    target.ip = asio::ip::make_address("127.0.0.1");
    target.port = pit.port;
    const auto started = std::chrono::steady_clock::now();
    boost::asio::io_context io;
    auto future = boost::asio::co_spawn(
        io, deliver(target, "a@spam.example", {"b@example.test"}, std::make_shared<const std::string>("x\r\n"), o),
        boost::asio::use_future);
    io.run();
    const auto r = future.get();
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
    EXPECT_TRUE(r.connected);
    EXPECT_EQ(r.error, "session deadline passed");
    EXPECT_EQ(r.recipients.at(0).outcome, delivery_outcome::temporary);
}

// A delivery held by a tarpit outlives its lease: the process must not claim the row again
// and start a second delivery of the same reservation beside the first.
TEST(RelayService, ARowBeingDeliveredIsNotClaimedAgainWhenItsLeaseRunsOut) {
    relay_test::fake_mta mta(false);
    tarpit pit;
    service_env env;
    auto o = env.options(mta);
    o.limits.test_server = "127.0.0.1:" + std::to_string(pit.port);
    o.lease = std::chrono::seconds(1);
    o.delivery_deadline = std::chrono::seconds(30);  // far longer than the lease, on purpose
    o.client.command_timeout = std::chrono::seconds(60);
    relay_service service(o, env.ingest.get(), env.events.get());
    service.start();
    service.submit(env.stored("slow1", "victim@example.test", "Subject: slow\r\n\r\nx\r\n"));
    ASSERT_TRUE(relay_test::wait_for([&] { return pit.accepted >= 1; }, std::chrono::seconds(10)));
    std::this_thread::sleep_for(std::chrono::milliseconds(3500));  // the lease ran out three times
    EXPECT_EQ(pit.accepted.load(), 1);
    EXPECT_EQ(pit.most_open.load(), 1);
    EXPECT_EQ(service.db().list_queue().at(0).attempts, 1u);
}

// The round's total deadline abandons a session a tarpit would hold for command_timeout, and
// the row is deferred (temporary) well before its lease ends.
TEST(RelayService, TheDeliveryDeadlineAbandonsASlowSession) {
    relay_test::fake_mta mta(false);
    tarpit pit;
    service_env env;
    auto o = env.options(mta);
    o.limits.test_server = "127.0.0.1:" + std::to_string(pit.port);
    o.delivery_deadline = std::chrono::seconds(2);
    o.retry_base = std::chrono::seconds(600);
    o.client.command_timeout = std::chrono::seconds(60);
    relay_service service(o, env.ingest.get(), env.events.get());
    service.start();
    const auto started = std::chrono::steady_clock::now();
    service.submit(env.stored("slow2", "victim@example.test", "Subject: slow\r\n\r\nx\r\n"));
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "deferred", 1); }, std::chrono::seconds(15)));
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
    const auto row = service.db().list_queue().at(0);
    EXPECT_EQ(row.attempts, 1u);
    EXPECT_NE(row.last_result.find("delivery deadline (2 s) passed"), std::string::npos) << row.last_result;
    const auto attempts = service.db().list_attempts();
    ASSERT_EQ(attempts.size(), 1u);
    EXPECT_EQ(attempts[0].outcome, "temporary");
    EXPECT_EQ(pit.accepted.load(), 1);
}

// A row left `sending` by processes that died while delivering it, max_attempts times: the
// next claim fails it; it is never sent again.
TEST(RelayService, ARowWhoseDeliveriesNeverFinishIsFailedNotResent) {
    relay_test::fake_mta mta(false);
    service_env env;
    auto o = env.options(mta);
    {
        safety reserve(env.data.path / "relaybait.db", o.limits);
        auto request = env.stored("crashy", "victim@example.test", "Subject: c\r\n\r\nx\r\n");
        request.sha256 = "sha-crashy";
        request.size = 20;
        ASSERT_TRUE(reserve.check_and_reserve(request).allowed);
        ASSERT_EQ(sqlite3_exec(reserve.db().handle(),
                               "UPDATE relay_queue SET state = 'sending', attempts = 5, lease_until = 1", nullptr, nullptr,
                               nullptr),
                  SQLITE_OK);
    }
    relay_service service(o, env.ingest.get(), env.events.get());  // max_attempts 5
    service.start();
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "failed", 1); }, std::chrono::seconds(10)));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_EQ(mta.received(), 0u);
    EXPECT_TRUE(service.db().list_attempts().empty());
    EXPECT_EQ(service.db().list_queue().at(0).attempts, 5u);
    EXPECT_NE(env.events_text().find("relay.failed"), std::string::npos);
}

// The last temporary failure a row may have: failed, saying its attempts are spent (and the
// maximum), nothing about a process that died or hung.
TEST(RelayService, TheLastTemporaryFailureSaysTheAttemptsAreExhausted) {
    relay_test::fake_mta mta(false);
    service_env env;
    auto o = env.options(mta);
    o.limits.test_server = "127.0.0.1:" + std::to_string(relay_test::free_port());  // down: refused
    o.max_attempts = 2;
    relay_service service(o, env.ingest.get(), env.events.get());
    service.start();
    service.submit(env.stored("m-exhausted", "victim@example.test", "Subject: e\r\n\r\nx\r\n"));
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "failed", 1); }, std::chrono::seconds(20)));
    const auto row = service.db().list_queue().at(0);
    EXPECT_EQ(row.attempts, 2u);
    EXPECT_TRUE(row.last_result.starts_with("attempts exhausted (2 of max 2): ")) << row.last_result;
    EXPECT_EQ(row.last_result.find("hung"), std::string::npos) << row.last_result;
    EXPECT_EQ(service.db().list_attempts().size(), 2u);
}

// A delivery cut off at shutdown (its coroutine destroyed with the relay's io_context while a
// tarpit MX holds it): the row stays `sending` under its lease, counted as one attempt. A new
// service on the same database leaves it alone until the lease runs out (the old process
// might still be sending), then delivers it once.
TEST(RelayService, ADeliveryCutOffAtShutdownIsDeliveredOnceAfterItsLease) {
    relay_test::fake_mta mta(false);
    service_env env;
    auto o = env.options(mta);
    o.lease = std::chrono::seconds(3);
    o.delivery_deadline = std::chrono::seconds(30);
    o.client.command_timeout = std::chrono::seconds(60);
    std::int64_t lease_until = 0;
    {
        tarpit pit;
        auto held = o;
        held.limits.test_server = "127.0.0.1:" + std::to_string(pit.port);
        relay_service first(held, env.ingest.get(), env.events.get());
        first.start();
        first.submit(env.stored("m-cut", "victim@example.test", "Subject: c\r\n\r\nx\r\n"));
        ASSERT_TRUE(relay_test::wait_for([&] { return pit.accepted >= 1; }, std::chrono::seconds(10)));
    }  // stopped and destroyed with the delivery in flight, then the tarpit goes
    {
        relay_db db(env.data.path / "relaybait.db");
        const auto row = db.list_queue().at(0);
        EXPECT_EQ(row.state, "sending");  // not lost, not failed, not deferred
        EXPECT_EQ(row.attempts, 1u);
        EXPECT_GT(row.lease_until, 0);
        lease_until = row.lease_until;
        EXPECT_TRUE(db.list_attempts().empty());  // the round never finished: no attempt row
    }
    relay_service second(o, env.ingest.get(), env.events.get());
    second.start();
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(second.db(), "delivered", 1); }, std::chrono::seconds(20)));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // retry_base is 1 s: a second copy would have come
    EXPECT_EQ(mta.received(), 1u);
    const auto row = second.db().list_queue().at(0);
    EXPECT_EQ(row.state, "delivered");
    EXPECT_EQ(row.attempts, 2u);  // the cut-off round counts
    const auto attempts = second.db().list_attempts();
    ASSERT_EQ(attempts.size(), 1u);
    EXPECT_EQ(attempts[0].outcome, "delivered");
    // Not before the lease ran out (same ISO 8601 format: compared as text).
    const auto lease_end = relaybait::events::iso8601_utc(std::chrono::system_clock::time_point(std::chrono::seconds(lease_until)));
    EXPECT_GE(attempts[0].started_at, lease_end) << "taken up under the first process's lease";
}

// Test mode is the reservation's: a row reserved in test mode goes to the test server even
// when the delivering process has test mode off, and fails when it has no test server.
TEST(RelayService, ARowReservedInTestModeNeverGoesToItsRealRecipient) {
    relay_test::fake_mta mta(false);
    service_env env;
    auto o = env.options(mta);  // test mode, test server = mta
    const auto reserve = [&](const std::string& id) {
        safety cli(env.data.path / "relaybait.db", o.limits);
        auto request = env.stored(id, "victim@example.test", "Subject: " + id + "\r\n\r\nx\r\n");
        request.sha256 = "sha-" + id;
        request.size = 20;
        ASSERT_TRUE(cli.check_and_reserve(request).allowed);
    };
    reserve("tm1");
    auto live = o;
    live.limits.test_mode = false;  // the operator turned test mode off; the server is still configured
    {
        relay_service service(live, env.ingest.get(), env.events.get());
        service.start();
        ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "delivered", 1); }, std::chrono::seconds(20)));
        ASSERT_EQ(mta.received(), 1u);
        const auto meta = boost::json::parse(relay_test::read_all(mta.out() / "1.json")).as_object();
        EXPECT_EQ(meta.at("rcpt_tos").as_array().at(0).as_string(), "operator@example.test");
        const auto attempts = service.db().list_attempts();
        ASSERT_EQ(attempts.size(), 1u);
        EXPECT_TRUE(attempts[0].test_mode);
        EXPECT_EQ(attempts[0].delivered_to, "operator@example.test");
    }
    reserve("tm2");
    live.limits.test_server.clear();
    live.limits.test_recipient.clear();
    relay_service service(live, env.ingest.get(), env.events.get());
    service.start();
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "failed", 1); }, std::chrono::seconds(20)));
    const auto rows = service.db().list_queue();
    EXPECT_NE(rows.at(0).last_result.find("reserved in test mode"), std::string::npos) << rows.at(0).last_result;
    EXPECT_EQ(service.db().list_attempts(rows.at(0).id).size(), 0u);
    EXPECT_EQ(mta.received(), 1u);  // only the first copy
}

// SSRF: outside test mode, an MX that resolves to a loopback address is never connected to
// unless allow_private_destinations (which the same setup then delivers through).
TEST(RelayService, AnMxOnLoopbackIsNotConnectedToUnlessAllowed) {
    loopback_dns dns;
    for (const bool allowed : {false, true}) {
        relay_test::fake_mta mta(false);
        service_env env;
        auto o = env.options(mta);
        o.limits.test_mode = false;
        o.limits.test_server.clear();
        o.limits.test_recipient.clear();
        o.dns.servers = {dns.server()};
        o.dns.timeout = std::chrono::milliseconds(1000);
        o.ports = {mta.port};
        o.allow_private_destinations = allowed;
        relay_service service(o, env.ingest.get(), env.events.get());
        service.start();
        service.submit(env.stored("ssrf", "victim@example.test", "Subject: s\r\n\r\nx\r\n"));
        if (!allowed) {
            ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "failed", 1); }, std::chrono::seconds(20)));
            const auto row = service.db().list_queue().at(0);
            EXPECT_NE(row.last_result.find("MX example.test resolves only to non-public addresses: mx.example.test "
                                           "127.0.0.1 (loopback)"),
                      std::string::npos)
                << row.last_result;
            EXPECT_TRUE(service.db().list_attempts().empty());
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            EXPECT_EQ(mta.received(), 0u);
        } else {
            ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "delivered", 1); }, std::chrono::seconds(20)));
            EXPECT_EQ(mta.received(), 1u);
            EXPECT_EQ(service.db().list_attempts().at(0).delivered_to, "victim@example.test");
        }
    }
}

// A queued relay whose message moved before delivery (Dovecot from new/ to cur/ with ":2,S",
// `rules apply` to a folder) is found again through the store and delivered once, with the
// message's bytes; a file found there with other content than the booked sha256 is not sent.
namespace {

const std::string trace_block = "Received: from h (unknown [1.2.3.4])\r\n\tby me; date\r\nX-Relaybait-Session: s\r\n";

// Stores `body` through the store (a real row and Maildir file) and books its relay (as the
// session or `relay ID` does), before any service runs.
relaybait::store::commit_result store_and_book(service_env& env, const relay_service_options& o, const std::string& body) {
    auto pending = env.ingest->begin_message("", trace_block);
    env.ingest->append(pending, body);
    relaybait::store::message_record record;
    record.session_id = "ssssssssssssssss";
    record.received_at = "2026-11-20T10:00:00.000000Z";
    record.peer_ip = "198.51.100.7";
    record.peer_port = 40000;
    record.listener = "smtp";
    record.mail_from = "spammer@spam.example";
    record.recipients = {"victim@example.test"};
    std::promise<relaybait::store::commit_result> done;
    auto future = done.get_future();
    env.ingest->commit(pending, record, [&done](relaybait::store::commit_result r) { done.set_value(std::move(r)); });
    auto committed = future.get();
    EXPECT_TRUE(committed.ok) << committed.error;
    relay_request request;
    request.message_id = std::to_string(committed.message_id);
    request.file = (env.data.path / committed.maildir_path).string();
    request.sha256 = committed.sha256;
    request.size = committed.size;
    request.mail_from = record.mail_from;
    request.recipients = record.recipients;
    request.client_ip = record.peer_ip;
    safety booking(env.data.path / "relaybait.db", o.limits);
    EXPECT_TRUE(booking.check_and_reserve(request).allowed);
    return committed;
}

}  // namespace

TEST(RelayService, AMessageMovedAfterBookingIsFoundThroughTheStoreAndDeliveredOnce) {
    relay_test::fake_mta mta(false);
    service_env env;
    const auto o = env.options(mta);
    const std::string seen_body = "Subject: seen over IMAP\r\n\r\nmoved to cur/ with flags\r\n";
    const std::string filed_body = "Subject: filed by rules apply\r\n\r\nmoved to a folder\r\n";
    const auto seen = store_and_book(env, o, seen_body);
    const auto filed = store_and_book(env, o, filed_body);
    // Dovecot: new/NAME -> cur/NAME:2,S (the store's row still says new/NAME).
    const fs::path recorded = env.data.path / seen.maildir_path;
    ASSERT_EQ(recorded.parent_path().filename(), "new");
    fs::rename(recorded, recorded.parent_path().parent_path() / "cur" / (recorded.filename().string() + ":2,S"));
    // `rules apply` with a folder action: the file and the row move to .Probes.
    {
        relaybait::store::database store_db(env.data.path / "relaybait.db", relaybait::store::database::mode::read_write);
        relaybait::store::move_message(store_db, env.data.path, filed.message_id, "Probes");
    }
    ASSERT_FALSE(fs::exists(env.data.path / filed.maildir_path));

    relay_service service(o, env.ingest.get(), env.events.get());
    service.start();
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "delivered", 2); }, std::chrono::seconds(20)))
        << service.db().list_queue().at(0).last_result << " / " << service.db().list_queue().at(1).last_result;
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // retry_base is 1 s: a second copy would have come
    ASSERT_EQ(mta.received(), 2u);
    std::set<std::string> sent{relay_test::read_all(mta.out() / "1.eml"), relay_test::read_all(mta.out() / "2.eml")};
    EXPECT_EQ(sent, (std::set<std::string>{seen_body, filed_body}));  // the messages, trace block excluded
    EXPECT_EQ(service.db().list_attempts().size(), 2u);
}

TEST(RelayService, AMovedMessageWhoseFileNowHoldsOtherBytesIsNotSent) {
    relay_test::fake_mta mta(false);
    service_env env;
    const auto o = env.options(mta);
    const auto booked = store_and_book(env, o, "Subject: probe\r\n\r\nthe message booked\r\n");
    // Gone from new/; in cur/, under its name, other bytes (same size: only the digest tells).
    const fs::path recorded = env.data.path / booked.maildir_path;
    fs::remove(recorded);
    relay_test::write_all(recorded.parent_path().parent_path() / "cur" / (recorded.filename().string() + ":2,S"),
                          trace_block + "Subject: probe\r\n\r\nsomething else!!!!\r\n");

    relay_service service(o, env.ingest.get(), env.events.get());
    service.start();
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "failed", 1); }, std::chrono::seconds(20)));
    const auto row = service.db().list_queue().at(0);
    EXPECT_NE(row.last_result.find("message file missing"), std::string::npos) << row.last_result;
    EXPECT_NE(row.last_result.find("is not the message booked (sha256 differs)"), std::string::npos) << row.last_result;
    EXPECT_TRUE(service.db().list_attempts().empty());
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    EXPECT_EQ(mta.received(), 0u);
}

// A booked message the store has no file for (deleted, or caught between a move's rename and
// its row update) is tried again with the usual backoff, then failed; nothing is ever sent.
TEST(RelayService, AMessageTheStoreCannotFindIsRetriedThenFailedAndNeverSent) {
    relay_test::fake_mta mta(false);
    service_env env;
    auto o = env.options(mta);
    o.max_attempts = 2;
    const auto booked = store_and_book(env, o, "Subject: probe\r\n\r\nthe message booked\r\n");
    fs::remove(env.data.path / booked.maildir_path);

    relay_service service(o, env.ingest.get(), env.events.get());
    service.start();
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "failed", 1); }, std::chrono::seconds(20)))
        << service.db().list_queue().at(0).last_result;
    const auto row = service.db().list_queue().at(0);
    EXPECT_EQ(row.attempts, 2u);
    EXPECT_NE(row.last_result.find("attempts exhausted (2 of max 2)"), std::string::npos) << row.last_result;
    EXPECT_NE(row.last_result.find("the store has no file"), std::string::npos) << row.last_result;
    EXPECT_EQ(mta.received(), 0u);
}

// A store row whose path is not one the store writes (a tampered database) is refused, not
// retried: no file outside the Maildir is read, nothing is sent.
TEST(RelayService, AMessageWhoseStoredPathIsRefusedIsFailedAtOnce) {
    relay_test::fake_mta mta(false);
    service_env env;
    auto o = env.options(mta);
    o.max_attempts = 3;
    const auto booked = store_and_book(env, o, "Subject: probe\r\n\r\nthe message booked\r\n");
    fs::remove(env.data.path / booked.maildir_path);
    {
        relaybait::store::database store_db(env.data.path / "relaybait.db", relaybait::store::database::mode::read_write);
        ASSERT_TRUE(store_db.update_message_location(booked.message_id, "", "../../etc/passwd"));
    }
    relay_service service(o, env.ingest.get(), env.events.get());
    service.start();
    ASSERT_TRUE(relay_test::wait_for([&] { return row_state(service.db(), "failed", 1); }, std::chrono::seconds(20)));
    const auto row = service.db().list_queue().at(0);
    EXPECT_EQ(row.attempts, 1u);
    EXPECT_NE(row.last_result.find("is not one it writes"), std::string::npos) << row.last_result;
    EXPECT_EQ(mta.received(), 0u);
}
