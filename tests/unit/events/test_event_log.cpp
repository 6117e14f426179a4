#include "events/event_log.hpp"
#include "events/json_safe.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace relaybait::events;

namespace {

struct temp_dir {
    fs::path path;
    temp_dir() {  // path stays empty when mkdtemp fails
        std::string tmpl = (fs::temp_directory_path() / "relaybait-events-XXXXXX").string();
        if (const char* made = ::mkdtemp(tmpl.data())) path = made;
    }
    ~temp_dir() {
        std::error_code ec;
        if (!path.empty()) fs::remove_all(path, ec);
    }
};

std::vector<std::string> read_lines(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

session_fields sample_session() {
    return {"0123456789abcdef", "sensor-1", "198.51.100.7", 40000, "203.0.113.1", 25, "smtp"};
}

}  // namespace

TEST(EventLog, TimestampFormat) {
    const std::regex iso(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)");
    EXPECT_TRUE(std::regex_match(iso8601_utc_now(), iso));
    using namespace std::chrono;
    EXPECT_EQ(iso8601_utc(system_clock::time_point(microseconds(1'795'457'223'123'456))),
              "2026-11-23T18:07:03.123456Z");
    EXPECT_EQ(iso8601_utc(system_clock::time_point(microseconds(0))), "1970-01-01T00:00:00.000000Z");
}

TEST(EventLog, TimestampsWithinAndAcrossSecondsStayExact) {
    using namespace std::chrono;
    // The calendar part is cached per second: alternate seconds and check every field.
    EXPECT_EQ(iso8601_utc(system_clock::time_point(microseconds(1'795'457'223'000'001))), "2026-11-23T18:07:03.000001Z");
    EXPECT_EQ(iso8601_utc(system_clock::time_point(microseconds(1'795'457'223'999'999))), "2026-11-23T18:07:03.999999Z");
    EXPECT_EQ(iso8601_utc(system_clock::time_point(microseconds(1'795'457'224'000'000))), "2026-11-23T18:07:04.000000Z");
    EXPECT_EQ(iso8601_utc(system_clock::time_point(microseconds(1'795'457'223'500'000))), "2026-11-23T18:07:03.500000Z");
    EXPECT_EQ(iso8601_utc(system_clock::time_point(microseconds(-1))), "1969-12-31T23:59:59.999999Z");
}

TEST(EventLog, WritesCommonFieldsAndEventFields) {
    temp_dir dir;
    const fs::path file = dir.path / "events.jsonl";
    {
        event_log log({.file = file});
        log.emit("relaybait.session.connect", sample_session());
        log.emit("relaybait.command.input", sample_session(),
                 {{"input", "EHLO x"}, {"src_ip", "spoofed"}, {"n", 3}});
        log.flush();
        EXPECT_EQ(log.written(), 2u);
    }
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777 & ~0640, 0u);  // never wider than 0640

    const auto lines = read_lines(file);
    ASSERT_EQ(lines.size(), 2u);
    const auto first = boost::json::parse(lines[0]).as_object();
    EXPECT_EQ(first.begin()->key(), "timestamp");
    EXPECT_EQ(first.at("eventid").as_string(), "relaybait.session.connect");
    EXPECT_EQ(first.at("session").as_string(), "0123456789abcdef");
    EXPECT_EQ(first.at("sensor").as_string(), "sensor-1");
    EXPECT_EQ(first.at("src_ip").as_string(), "198.51.100.7");
    EXPECT_EQ(first.at("src_port").to_number<int>(), 40000);
    EXPECT_EQ(first.at("dst_ip").as_string(), "203.0.113.1");
    EXPECT_EQ(first.at("dst_port").to_number<int>(), 25);
    EXPECT_EQ(first.at("protocol").as_string(), "smtp");
    const auto second = boost::json::parse(lines[1]).as_object();
    EXPECT_EQ(second.at("input").as_string(), "EHLO x");
    EXPECT_EQ(second.at("src_ip").as_string(), "198.51.100.7");  // common fields win
    EXPECT_EQ(second.at("n").to_number<int>(), 3);
}

TEST(EventLog, HostileBytesStayValidJsonOnOneLine) {
    temp_dir dir;
    const fs::path file = dir.path / "events.jsonl";
    std::string hostile = "MAIL FROM:<\xFF\xFE\"\\\r\n{\"eventid\":\"fake\"}\x00\xC0\xAF>";
    hostile.push_back('\0');
    {
        event_log log({.file = file});
        log.emit("relaybait.command.input", sample_session(), {{"input", hostile}, {"key\xFF", "x"}});
        log.flush();
    }
    const auto lines = read_lines(file);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_TRUE(is_valid_utf8(lines[0]));
    boost::system::error_code ec;
    auto v = boost::json::parse(lines[0], ec);
    ASSERT_FALSE(ec) << lines[0];
    EXPECT_EQ(std::string(v.at("input").as_string()), to_json_safe(hostile));
    EXPECT_EQ(v.at("eventid").as_string(), "relaybait.command.input");
    EXPECT_TRUE(v.as_object().contains("key\xEF\xBF\xBD"));
}

TEST(EventLog, EmitRawAddsTimestampWhenMissing) {
    temp_dir dir;
    const fs::path file = dir.path / "events.jsonl";
    {
        event_log log({.file = file});
        log.emit_raw({{"eventid", "relaybait.start"}});
        log.emit_raw({{"eventid", "relaybait.stop"}, {"timestamp", "2020-01-01T00:00:00.000000Z"}});
    }  // destructor writes what is queued
    const auto lines = read_lines(file);
    ASSERT_EQ(lines.size(), 2u);
    auto a = boost::json::parse(lines[0]).as_object();
    EXPECT_EQ(a.begin()->key(), "timestamp");
    EXPECT_EQ(a.at("eventid").as_string(), "relaybait.start");
    EXPECT_EQ(boost::json::parse(lines[1]).at("timestamp").as_string(), "2020-01-01T00:00:00.000000Z");
}

TEST(EventLog, AppendsToAnExistingFile) {
    temp_dir dir;
    const fs::path file = dir.path / "events.jsonl";
    for (int round = 0; round < 2; ++round) {
        event_log log({.file = file});
        log.emit("e", sample_session());
    }
    EXPECT_EQ(read_lines(file).size(), 2u);
}

TEST(EventLog, RotatesBySizeKeepingNFiles) {
    temp_dir dir;
    const fs::path file = dir.path / "events.jsonl";
    {
        event_log log({.file = file, .rotate_bytes = 1000, .keep_files = 3});
        for (int i = 0; i < 100; ++i) {
            log.emit("relaybait.test", sample_session(), {{"i", i}});
            if (i % 7 == 0) log.flush();
        }
        log.flush();
    }
    EXPECT_TRUE(fs::exists(file));
    EXPECT_TRUE(fs::exists(dir.path / "events.jsonl.1"));
    EXPECT_TRUE(fs::exists(dir.path / "events.jsonl.2"));
    EXPECT_TRUE(fs::exists(dir.path / "events.jsonl.3"));
    EXPECT_FALSE(fs::exists(dir.path / "events.jsonl.4"));
    int last_i = -1;
    for (const char* name : {"events.jsonl.3", "events.jsonl.2", "events.jsonl.1", "events.jsonl"}) {
        EXPECT_LE(fs::file_size(dir.path / name), 1000u) << name;
        for (const auto& line : read_lines(dir.path / name)) {
            const int i = boost::json::parse(line).at("i").to_number<int>();
            EXPECT_GT(i, last_i);  // order preserved across generations
            last_i = i;
        }
    }
    EXPECT_EQ(last_i, 99);
}

TEST(EventLog, BoundedQueueDropsAndCounts) {
    temp_dir dir;
    event_log log({.file = dir.path / "events.jsonl", .max_queued = 4});
    std::uint64_t emitted = 0;
    for (int i = 0; i < 20'000; ++i, ++emitted) log.emit("e", sample_session());
    log.flush();
    EXPECT_EQ(log.written() + log.dropped(), emitted);
    EXPECT_EQ(read_lines(dir.path / "events.jsonl").size(), log.written());
}

TEST(EventLog, ManyThreadsEmitWholeLines) {
    temp_dir dir;
    const fs::path file = dir.path / "events.jsonl";
    {
        event_log log({.file = file});
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t)
            threads.emplace_back([&, t] {
                for (int i = 0; i < 500; ++i) log.emit("e", sample_session(), {{"t", t}, {"i", i}});
            });
        for (auto& t : threads) t.join();
        log.flush();
        EXPECT_EQ(log.written(), 2000u);
    }
    for (const auto& line : read_lines(file)) ASSERT_NO_THROW((void)boost::json::parse(line)) << line;
}

TEST(EventLog, UnopenableFileThrows) {
    EXPECT_THROW(event_log({.file = "/proc/relaybait-no-such-dir/events.jsonl"}), std::runtime_error);
}

// The writer lingers after the first event so that a burst costs one write; flush() and the
// destructor cut the linger short, and a full linger batch is written at once.
TEST(EventLog, FlushDestructionAndFullBatchesDoNotWaitForTheLinger) {
    temp_dir dir;
    const fs::path file = dir.path / "events.jsonl";
    const auto started = std::chrono::steady_clock::now();
    {
        event_log log({.file = file, .linger = std::chrono::minutes(10), .linger_events = 4});
        log.emit("smtp.helo", sample_session());
        log.flush();
        EXPECT_EQ(read_lines(file).size(), 1u);
        for (int i = 0; i < 4; ++i) log.emit("smtp.mail_from", sample_session());  // a full batch, no flush
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (read_lines(file).size() < 5 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        EXPECT_EQ(read_lines(file).size(), 5u);
        log.emit("session.close", sample_session());  // pending when the log is destroyed
    }
    EXPECT_EQ(read_lines(file).size(), 6u);
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));
}

// The writer never preempts the network thread when it wakes (common/background_thread.hpp).
// It names itself and takes SCHED_BATCH once it runs (the constructor does not wait for that):
// polled until it has.
TEST(EventLog, TheWriterIsABatchThreadNamedForTop) {
    temp_dir dir;
    event_log log(event_log_options{dir.path / "events.jsonl"});
    // The scheduling policy of each thread of this process named rb-events (Linux: /proc/self/task).
    const auto writers = [] {
        std::vector<int> policies;
        std::error_code ec;
        for (fs::directory_iterator it("/proc/self/task", ec), end; !ec && it != end; it.increment(ec)) {
            std::ifstream comm(it->path() / "comm");
            std::string name;
            if (!std::getline(comm, name) || name != "rb-events") continue;  // or the thread ended
            policies.push_back(::sched_getscheduler(static_cast<pid_t>(std::stol(it->path().filename().string()))));
        }
        return policies;
    };
    auto found = writers();
    for (const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
         !(found.size() == 1 && found[0] == SCHED_BATCH) && std::chrono::steady_clock::now() < deadline; found = writers())
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0], SCHED_BATCH);
}
