#pragma once
// The relay's own tables in the shared DATA/relaybait.db (SQLite, WAL, synchronous=FULL).
// They are created by the relay module's own numbered migrations (relay_schema_migrations),
// applied in one BEGIN IMMEDIATE transaction at open, so two processes opening at once never
// both migrate, and the store's schema (schema_migrations) is never touched.
//
//   relay_counters  (day, scope, key, count)       the caps; day = UTC date "YYYY-MM-DD";
//                                                  scope daily|sender|client_ip|recipient|domain
//   relay_digests   (sha256 PK, message_id, at)    "an identical message is relayed at most once"
//   relay_state     (key PK, value)                paused=0|1 (the CLI's `relay pause`), the
//                                                  current .Logs file per day
//   relay_decisions (one row per check: allowed or refused with the cap's name)
//   relay_queue     (one row per (message, recipient) allowed: durable, survives restarts;
//                    state queued|sending|deferred|delivered|failed, attempts, next_attempt_at,
//                    lease_until so that several processes on one DB never send one row twice,
//                    test_mode: reserved in test mode, so never sent to the real recipient)
//   relay_attempts  (one row per SMTP connection: MX host, IP, port, TLS, reply, transcript)
//   relay_published_limits (one row: the caps and switches the last `serve` started with, its
//                    time, pid and sensor; published_limits.hpp, read by every safety check)
//
// One instance = one SQLite connection, serialised by a mutex; open one per thread or
// process when parallelism matters (the caps hold across connections: see safety.hpp).
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

struct sqlite3;

namespace relaybait::relay {

using sys_time = std::chrono::system_clock::time_point;

// "YYYY-MM-DD" of `at` in UTC: the day the caps count in.
std::string utc_day(sys_time at);
std::int64_t unix_seconds(sys_time at);

struct queue_row {
    std::int64_t id = 0;
    std::int64_t decision_id = 0;
    std::string message_id;
    std::string file;       // the stored Maildir file (path as submitted)
    std::string sha256;
    std::string mail_from;
    std::string recipient;  // the one recipient this row delivers to
    std::string recipients_json;  // every recipient of the request (JSON array)
    std::string client_ip;
    std::uint64_t size = 0;
    bool manual = false;
    std::string state;  // queued, sending, deferred, delivered, failed
    unsigned attempts = 0;
    std::int64_t next_attempt_at = 0;  // unix seconds
    std::int64_t lease_until = 0;
    std::string created_at, updated_at;
    std::string last_result;
    std::string relayed_path;  // the copy in .Probes, once final
    bool test_mode = false;    // reserved in test mode: only ever sent to the test server
};

struct attempt_row {
    std::int64_t id = 0;
    std::int64_t queue_id = 0;
    std::string message_id;
    std::string recipient;     // the original recipient
    std::string delivered_to;  // the RCPT TO actually used (test mode: the operator's address)
    std::string mx_host;
    std::string ip;
    std::uint16_t port = 0;
    std::string tls_version, tls_cipher;
    bool tls_verified = false;
    std::string tls_verify_result;
    int reply_code = 0;
    std::string reply_text;
    std::string transcript_json;  // [{"at":..,"dir":"C|S|I","text":..}]
    std::string started_at, ended_at;
    std::string outcome;  // delivered, temporary, permanent, unknown (no reply to the final dot)
    bool test_mode = false;
};

struct decision_row {
    std::int64_t id = 0;
    std::string at, day, message_id, sha256, mail_from, recipients_json, client_ip;
    std::uint64_t size = 0;
    bool manual = false;
    bool allowed = false;
    std::string cap;  // empty when allowed
};

// "attempts exhausted (N of max M" (the caller closes the parenthesis, adding why): the start
// of a row's last_result when it fails for want of attempts.
std::string attempts_exhausted(unsigned attempts, unsigned max_attempts);

class relay_db {
public:
    // read_write: opens (creating when needed) the database file and applies the relay
    // migrations (what `serve`, the safety check and the state-changing commands use).
    // read_only: what the inspection commands use (`relay status`, `relays list`, `stats`), so
    // they never upgrade the schema under an older running server nor write to the file
    // (a copy kept for forensics stays as it is; being in WAL mode, SQLite still needs its -shm
    // file, or a directory it may create it in): SQLITE_OPEN_READONLY (never created), no PRAGMA that writes,
    // no migration, no transaction that takes the write lock, PRAGMA query_only; the write
    // methods below throw. A relay schema other than this build's is refused ("relay schema
    // version N, this relaybait expects M; start the server to migrate"; a newer one: "is newer
    // than this relaybait"). A database without any relay table (the relay migrations never ran
    // on it) reads as empty, as a freshly migrated one would: no rows, not paused, nothing
    // published (an empty in-memory schema stands in for it; has_relay_tables() is false).
    // Throws std::runtime_error naming the file and SQLite's message.
    enum class mode { read_write, read_only };
    explicit relay_db(const std::filesystem::path& file, mode open_mode = mode::read_write);
    ~relay_db();
    relay_db(const relay_db&) = delete;
    relay_db& operator=(const relay_db&) = delete;

    static int latest_schema_version();
    int schema_version();  // 0 for a read_only database without relay tables
    const std::filesystem::path& file() const { return file_; }
    bool read_only() const { return mode_ == mode::read_only; }
    bool has_relay_tables() const { return has_relay_tables_; }

    // Proof that the caller holds mutex() (safety::check_and_reserve, inside its transaction):
    // the overloads taking it do not lock again (std::mutex is not re-entrant).
    using held_lock = std::lock_guard<std::mutex>;

    // relay_state
    bool paused();
    bool paused(const held_lock& held);
    void set_paused(bool paused);
    std::optional<std::string> state(const std::string& key);
    void set_state(const std::string& key, const std::string& value);

    // Counters (read only; increments happen inside safety::check_and_reserve).
    std::uint64_t counter(const std::string& day, const std::string& scope, const std::string& key);
    std::uint64_t counter(const held_lock& held, const std::string& day, const std::string& scope, const std::string& key);

    // Queue. claim_due: rows whose time has come (queued/deferred with next_attempt_at <= now,
    // or sending with an expired lease: the process that claimed it died or hung), except the
    // ids in `in_flight` (the caller's own deliveries, whatever their lease says), are claimed
    // atomically and returned, at most `limit`. A claim counts one attempt (attempts + 1, in
    // the same transaction: a crash-looping process cannot resend forever): the row becomes
    // `sending` with lease_until = now + lease; a row whose count would pass max_attempts
    // becomes `failed` instead, its count unchanged ("attempts exhausted (N of max M)" in
    // last_result, saying the last never finished only when the row was still `sending`), and
    // is returned with that state, to be reported, never delivered. So a delivery's attempt number is the returned
    // row's `attempts`; finish() writes it back unchanged.
    std::vector<queue_row> claim_due(sys_time now, std::chrono::seconds lease, unsigned max_attempts,
                                     std::size_t limit = 64, const std::set<std::int64_t>& in_flight = {});
    void finish(std::int64_t queue_id, const std::string& state, unsigned attempts,
                std::int64_t next_attempt_at, const std::string& last_result,
                const std::string& relayed_path, sys_time now);
    std::optional<queue_row> find_queue_row(std::int64_t id);
    std::vector<queue_row> list_queue(std::size_t limit = 1000);  // newest first
    // Rows per state, the whole queue counted; a state without rows is absent.
    std::map<std::string, std::uint64_t> count_queue_by_state();
    // The rows created on `day` ("YYYY-MM-DD", UTC), oldest first.
    std::vector<queue_row> queue_of_day(const std::string& day, std::size_t limit = 10'000);
    // Earliest next_attempt_at (lease_until for `sending`) of the waiting rows not in `in_flight`.
    std::optional<std::int64_t> next_due_time(const std::set<std::int64_t>& in_flight = {});

    std::int64_t insert_attempt(const attempt_row& attempt);
    std::vector<attempt_row> list_attempts(std::optional<std::int64_t> queue_id = {}, std::size_t limit = 1000);
    std::vector<decision_row> list_decisions(std::size_t limit = 1000);
    std::vector<decision_row> decisions_of_day(const std::string& day, std::size_t limit = 10'000);
    // Of these message ids, the ones no relay decision was ever recorded for.
    std::vector<std::string> without_decision(const std::vector<std::string>& message_ids);

    // Low level, for safety.cpp: the connection and the lock that serialises it.
    sqlite3* handle() { return db_; }
    std::mutex& mutex() { return mutex_; }

private:
    // Only paused(held) reads relay_state under a lock already held; nothing outside does.
    std::optional<std::string> state(const held_lock& held, const std::string& key);
    void open_read_only();
    void require_writable() const;  // throws on a read_only connection

    std::filesystem::path file_;
    mode mode_ = mode::read_write;
    bool has_relay_tables_ = true;
    sqlite3* db_ = nullptr;
    std::mutex mutex_;
};

}  // namespace relaybait::relay
