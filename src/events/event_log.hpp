#pragma once
// DATA/events.jsonl: one JSON object per line, the common fields of the honeypot ecosystem
// (Cowrie, Dionaea, T-Pot): timestamp, eventid, session, sensor, src_ip, src_port, dst_ip,
// dst_port, protocol, plus the event's own fields. Written by a background thread; emit()
// never blocks on disk; the writer lingers a few milliseconds to write a burst at once.
// Rotated by size: events.jsonl -> events.jsonl.1 -> ... (keep N).
// Every string and key is made valid UTF-8 first (events/json_safe.hpp): ill-formed bytes
// from the network become U+FFFD. The file is opened in append mode, created 0640.
// Common fields always win over an event field of the same name. The constructor throws
// std::runtime_error when the file cannot be opened; later write errors count as dropped.
#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace relaybait::events {

struct event_log_options {
    std::filesystem::path file;             // DATA/events.jsonl
    std::uint64_t rotate_bytes = 100u << 20;
    unsigned keep_files = 10;
    std::size_t max_queued = 100'000;       // beyond this, events are dropped and counted
    // The writer waits this long after the first queued event (or until linger_events are
    // queued, or flush()) so that one write serves a burst: an event reaches the file at most
    // `linger` plus the write later; a crash of the process can lose that much.
    std::chrono::milliseconds linger{5};
    std::size_t linger_events = 512;
};

// The fields every event of one session carries.
struct session_fields {
    std::string session;
    std::string sensor;
    std::string src_ip;
    std::uint16_t src_port = 0;
    std::string dst_ip;
    std::uint16_t dst_port = 0;
    std::string protocol;  // smtp, smtps, submission
};

class event_log {
public:
    explicit event_log(event_log_options options);
    ~event_log();  // writes what is queued, then stops
    event_log(const event_log&) = delete;
    event_log& operator=(const event_log&) = delete;

    // Adds timestamp (now, ISO 8601 UTC, microseconds), eventid and the session fields.
    void emit(std::string_view eventid, const session_fields& session, boost::json::object fields = {});
    void emit_raw(boost::json::object event);  // a complete event (timestamp added if missing)
    void flush();  // blocks until everything queued so far is written (tests, shutdown)
    std::uint64_t dropped() const;  // events lost: queue full, or the file could not be written
    std::uint64_t written() const;  // events written to the file

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

std::string iso8601_utc_now();
// "2026-11-23T18:07:03.123456Z" for any instant (added for tests and the store).
std::string iso8601_utc(std::chrono::system_clock::time_point at);

}  // namespace relaybait::events
