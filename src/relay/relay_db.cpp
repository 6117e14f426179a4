#include "relay/relay_db.hpp"

#include <ctime>

#include "events/event_log.hpp"
#include "relay/sqlite_util.hpp"

namespace relaybait::relay {

using detail::exec;
using detail::stmt;

std::string utc_day(sys_time at) {
    const std::time_t seconds = std::chrono::system_clock::to_time_t(at);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[16];
    std::strftime(text, sizeof text, "%Y-%m-%d", &utc);
    return text;
}

std::int64_t unix_seconds(sys_time at) {
    return std::chrono::duration_cast<std::chrono::seconds>(at.time_since_epoch()).count();
}

namespace {

// Numbered migrations; never edit one that shipped, append a new one.
const char* const migrations[] = {
    // 1
    R"sql(
CREATE TABLE relay_counters(
  day TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY(day, scope, key)) WITHOUT ROWID;
CREATE TABLE relay_state(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE relay_digests(sha256 TEXT PRIMARY KEY, message_id TEXT NOT NULL, reserved_at TEXT NOT NULL);
CREATE TABLE relay_decisions(
  id INTEGER PRIMARY KEY, at TEXT NOT NULL, day TEXT NOT NULL, message_id TEXT NOT NULL,
  sha256 TEXT NOT NULL, mail_from TEXT NOT NULL, recipients TEXT NOT NULL, client_ip TEXT NOT NULL,
  size INTEGER NOT NULL, manual INTEGER NOT NULL, allowed INTEGER NOT NULL, cap TEXT NOT NULL);
CREATE INDEX relay_decisions_day ON relay_decisions(day);
CREATE TABLE relay_queue(
  id INTEGER PRIMARY KEY, decision_id INTEGER NOT NULL, message_id TEXT NOT NULL, file TEXT NOT NULL,
  sha256 TEXT NOT NULL, mail_from TEXT NOT NULL, recipient TEXT NOT NULL, recipients TEXT NOT NULL,
  client_ip TEXT NOT NULL, size INTEGER NOT NULL, manual INTEGER NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL,
  lease_until INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  last_result TEXT NOT NULL DEFAULT '', relayed_path TEXT NOT NULL DEFAULT '');
CREATE INDEX relay_queue_due ON relay_queue(state, next_attempt_at);
CREATE TABLE relay_attempts(
  id INTEGER PRIMARY KEY, queue_id INTEGER NOT NULL, message_id TEXT NOT NULL, recipient TEXT NOT NULL,
  delivered_to TEXT NOT NULL, mx_host TEXT NOT NULL, ip TEXT NOT NULL, port INTEGER NOT NULL,
  tls_version TEXT NOT NULL, tls_cipher TEXT NOT NULL, tls_verified INTEGER NOT NULL,
  tls_verify_result TEXT NOT NULL, reply_code INTEGER NOT NULL, reply_text TEXT NOT NULL,
  transcript TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT NOT NULL, outcome TEXT NOT NULL,
  test_mode INTEGER NOT NULL);
CREATE INDEX relay_attempts_queue ON relay_attempts(queue_id);
)sql",
    // 2: finding probes whose relay request never reached the safety check (crash after the 250)
    R"sql(
CREATE INDEX relay_decisions_message ON relay_decisions(message_id);
)sql",
    // 3: the queue rows of one day (the daily .Logs message, rewritten after every relay)
    R"sql(
CREATE INDEX relay_queue_created ON relay_queue(created_at);
)sql",
    // 4: test mode is the reservation's, not the delivering process's: a row reserved in test
    // mode never goes to its real recipient, whatever the config is when it is sent. Rows still
    // waiting when the database is upgraded were reserved by a build that did not record it:
    // they count as test mode (fail closed: sent to the operator, or failed without a test
    // server), since nobody can tell which of them were reserved in test mode.
    R"sql(
ALTER TABLE relay_queue ADD COLUMN test_mode INTEGER NOT NULL DEFAULT 0;
UPDATE relay_queue SET test_mode = 1 WHERE state IN ('queued', 'deferred', 'sending');
)sql",
    // 5: the caps and switches the running server started with (published_limits.hpp): one row,
    // overwritten by every `serve` start; safety::check_and_reserve applies the stricter of
    // them and its own, so a CLI `relaybait relay ID` cannot book against looser caps.
    R"sql(
CREATE TABLE relay_published_limits(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  enabled INTEGER NOT NULL, daily INTEGER NOT NULL, per_recipient_daily INTEGER NOT NULL,
  per_sender_daily INTEGER NOT NULL, per_client_ip_daily INTEGER NOT NULL, per_domain_daily INTEGER NOT NULL,
  max_size INTEGER NOT NULL, max_recipients INTEGER NOT NULL, test_mode INTEGER NOT NULL,
  test_server TEXT NOT NULL, test_recipient TEXT NOT NULL,
  published_at TEXT NOT NULL, pid INTEGER NOT NULL, sensor TEXT NOT NULL);
)sql",
};

constexpr const char* queue_columns =
    "id, decision_id, message_id, file, sha256, mail_from, recipient, recipients, client_ip, size, manual, "
    "state, attempts, next_attempt_at, lease_until, created_at, updated_at, last_result, relayed_path, test_mode";

queue_row read_queue_row(const stmt& s) {
    queue_row r;
    r.id = s.i64(0);
    r.decision_id = s.i64(1);
    r.message_id = s.text(2);
    r.file = s.text(3);
    r.sha256 = s.text(4);
    r.mail_from = s.text(5);
    r.recipient = s.text(6);
    r.recipients_json = s.text(7);
    r.client_ip = s.text(8);
    r.size = static_cast<std::uint64_t>(s.i64(9));
    r.manual = s.i64(10) != 0;
    r.state = s.text(11);
    r.attempts = static_cast<unsigned>(s.i64(12));
    r.next_attempt_at = s.i64(13);
    r.lease_until = s.i64(14);
    r.created_at = s.text(15);
    r.updated_at = s.text(16);
    r.last_result = s.text(17);
    r.relayed_path = s.text(18);
    r.test_mode = s.i64(19) != 0;
    return r;
}

constexpr const char* decision_columns =
    "id, at, day, message_id, sha256, mail_from, recipients, client_ip, size, manual, allowed, cap";

decision_row read_decision(const stmt& s) {
    decision_row d;
    d.id = s.i64(0);
    d.at = s.text(1);
    d.day = s.text(2);
    d.message_id = s.text(3);
    d.sha256 = s.text(4);
    d.mail_from = s.text(5);
    d.recipients_json = s.text(6);
    d.client_ip = s.text(7);
    d.size = static_cast<std::uint64_t>(s.i64(8));
    d.manual = s.i64(9) != 0;
    d.allowed = s.i64(10) != 0;
    d.cap = s.text(11);
    return d;
}

// " AND id NOT IN (...)" for the rows this process is delivering (ids are integers: no quoting).
std::string not_in_flight(const std::set<std::int64_t>& in_flight) {
    if (in_flight.empty()) return "";
    std::string sql = " AND id NOT IN (";
    for (const auto id : in_flight) sql += (sql.back() == '(' ? "" : ",") + std::to_string(id);
    return sql + ")";
}

}  // namespace

std::string attempts_exhausted(unsigned attempts, unsigned max_attempts) {
    return "attempts exhausted (" + std::to_string(attempts) + " of max " + std::to_string(max_attempts);
}

int relay_db::latest_schema_version() { return static_cast<int>(std::size(migrations)); }

namespace {

int read_schema_version(sqlite3* db) {
    stmt s(db, "SELECT COALESCE(MAX(version), 0) FROM relay_schema_migrations");
    return s.step() ? static_cast<int>(s.i64(0)) : 0;
}

// Creates the migrations table and applies the missing migrations, in one BEGIN IMMEDIATE
// transaction (two processes opening at once never both migrate).
void migrate(sqlite3* db) {
    detail::transaction tx(db);
    exec(db, "CREATE TABLE IF NOT EXISTS relay_schema_migrations(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)");
    const int current = read_schema_version(db);
    if (current > relay_db::latest_schema_version()) {
        throw std::runtime_error("relay schema version " + std::to_string(current) +
                                 " is newer than this build knows (" + std::to_string(relay_db::latest_schema_version()) + ")");
    }
    for (int v = current; v < relay_db::latest_schema_version(); ++v) {
        exec(db, migrations[v]);
        stmt s(db, "INSERT INTO relay_schema_migrations(version, applied_at) VALUES(?, ?)");
        s.bind(1, v + 1).bind(2, events::iso8601_utc_now()).run();
    }
    tx.commit();
}

sqlite3* open_connection(const std::filesystem::path& file, int flags) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(file.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
        std::string message = db ? sqlite3_errmsg(db) : "out of memory";
        sqlite3_close(db);
        throw std::runtime_error("relay db " + file.string() + ": " + message);
    }
    return db;
}

}  // namespace

relay_db::relay_db(const std::filesystem::path& file, mode open_mode) : file_(file), mode_(open_mode) {
    db_ = open_connection(file, open_mode == mode::read_only ? SQLITE_OPEN_READONLY
                                                               : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    try {
        // Generous: the caps' transactions are tiny, but a flood from many sessions and
        // several sensors queues on the write lock; waiting is correct, failing is not.
        sqlite3_busy_timeout(db_, 60'000);
        if (open_mode == mode::read_only) {
            open_read_only();
            return;
        }
        exec(db_, "PRAGMA journal_mode=WAL");
        exec(db_, "PRAGMA synchronous=FULL");
        migrate(db_);
    } catch (const std::exception& e) {
        sqlite3_close(db_);
        db_ = nullptr;
        throw std::runtime_error("relay db " + file.string() + ": " + e.what());
    }
}

// Reads only: the relay schema must be this build's; without relay tables, an empty schema in
// memory answers the reads (what a database migrated now would hold), and the file is left as is.
void relay_db::open_read_only() {
    exec(db_, "PRAGMA query_only=1");
    bool has_tables = false;
    {
        stmt s(db_, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'relay_schema_migrations'");
        has_tables = s.step();
    }
    if (!has_tables) {
        has_relay_tables_ = false;
        sqlite3_close(db_);
        db_ = nullptr;
        db_ = open_connection(":memory:", SQLITE_OPEN_READWRITE);
        migrate(db_);
        exec(db_, "PRAGMA query_only=1");
        return;
    }
    const int version = read_schema_version(db_);
    const int expected = latest_schema_version();
    if (version > expected)
        throw std::runtime_error("relay schema version " + std::to_string(version) + " is newer than this relaybait (" +
                                 std::to_string(expected) + "): use the relaybait that serves from this directory");
    if (version != expected)
        throw std::runtime_error("relay schema version " + std::to_string(version) + ", this relaybait expects " +
                                 std::to_string(expected) + "; start the server to migrate");
}

void relay_db::require_writable() const {
    if (mode_ == mode::read_only) throw std::runtime_error("relay db " + file_.string() + ": opened read-only");
}

relay_db::~relay_db() { sqlite3_close(db_); }

int relay_db::schema_version() {
    if (!has_relay_tables_) return 0;
    std::lock_guard lock(mutex_);
    return read_schema_version(db_);
}

bool relay_db::paused() {
    const held_lock lock(mutex_);
    return paused(lock);
}

bool relay_db::paused(const held_lock& held) { return state(held, "paused").value_or("0") == "1"; }

void relay_db::set_paused(bool paused) { set_state("paused", paused ? "1" : "0"); }

std::optional<std::string> relay_db::state(const std::string& key) {
    const held_lock lock(mutex_);
    return state(lock, key);
}

std::optional<std::string> relay_db::state(const held_lock&, const std::string& key) {
    stmt s(db_, "SELECT value FROM relay_state WHERE key = ?");
    s.bind(1, key);
    if (!s.step()) return std::nullopt;
    return s.text(0);
}

void relay_db::set_state(const std::string& key, const std::string& value) {
    require_writable();
    std::lock_guard lock(mutex_);
    stmt s(db_, "INSERT INTO relay_state(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    s.bind(1, key).bind(2, value).run();
}

std::uint64_t relay_db::counter(const std::string& day, const std::string& scope, const std::string& key) {
    const held_lock lock(mutex_);
    return counter(lock, day, scope, key);
}

std::uint64_t relay_db::counter(const held_lock&, const std::string& day, const std::string& scope, const std::string& key) {
    stmt s(db_, "SELECT count FROM relay_counters WHERE day = ? AND scope = ? AND key = ?");
    s.bind(1, day).bind(2, scope).bind(3, key);
    return s.step() ? static_cast<std::uint64_t>(s.i64(0)) : 0;
}

std::vector<queue_row> relay_db::claim_due(sys_time now, std::chrono::seconds lease, unsigned max_attempts,
                                           std::size_t limit, const std::set<std::int64_t>& in_flight) {
    require_writable();
    std::lock_guard lock(mutex_);
    const std::int64_t t = unix_seconds(now);
    std::vector<queue_row> rows;
    detail::transaction tx(db_);
    {
        // The rows this process is delivering are left out in SQL, so they cannot crowd the
        // due ones out of the limit.
        stmt s(db_, (std::string("SELECT ") + queue_columns +
                     " FROM relay_queue WHERE ((state IN ('queued','deferred') AND next_attempt_at <= ?1)"
                     " OR (state = 'sending' AND lease_until <= ?1))" + not_in_flight(in_flight) +
                     " ORDER BY next_attempt_at, id LIMIT ?2")
                        .c_str());
        s.bind(1, t).bind(2, static_cast<std::int64_t>(limit));
        while (s.step()) rows.push_back(read_queue_row(s));
    }
    const std::string at = events::iso8601_utc(now);
    stmt claim(db_, "UPDATE relay_queue SET state = 'sending', attempts = ?, lease_until = ?, updated_at = ? WHERE id = ?");
    stmt give_up(db_,
                 "UPDATE relay_queue SET state = 'failed', attempts = ?, lease_until = 0, next_attempt_at = ?, "
                 "last_result = ?, updated_at = ? WHERE id = ?");
    for (auto& r : rows) {
        // No attempt left: failed with the attempts it had, never delivered. Only a row still
        // `sending` (its lease ran out) says its last round never finished; a queued or deferred
        // one simply has none left (max_attempts was lowered since it was deferred, or its last
        // round was paused after it had connected).
        if (r.attempts >= max_attempts) {
            r.last_result = attempts_exhausted(r.attempts, max_attempts) +
                            (r.state == "sending" ? "; the last never finished: the process died or hung)" : ")") +
                            (r.last_result.empty() ? std::string() : "; before: " + r.last_result);
            r.state = "failed";
            r.lease_until = 0;
            r.next_attempt_at = t;
            give_up.bind(1, r.attempts).bind(2, t).bind(3, r.last_result).bind(4, at).bind(5, r.id).run();
            give_up.reset();
            continue;
        }
        // The claim is the attempt: counted here, in the same transaction, so a process that
        // dies (or hangs) while sending still spends one of the row's attempts.
        r.attempts += 1;
        r.state = "sending";
        r.lease_until = t + lease.count();
        claim.bind(1, r.attempts).bind(2, r.lease_until).bind(3, at).bind(4, r.id).run();
        claim.reset();
    }
    tx.commit();
    return rows;
}

void relay_db::finish(std::int64_t queue_id, const std::string& state, unsigned attempts, std::int64_t next_attempt_at,
                      const std::string& last_result, const std::string& relayed_path, sys_time now) {
    require_writable();
    std::lock_guard lock(mutex_);
    stmt s(db_,
           "UPDATE relay_queue SET state = ?, attempts = ?, next_attempt_at = ?, lease_until = 0, last_result = ?, "
           "relayed_path = CASE WHEN ? = '' THEN relayed_path ELSE ? END, updated_at = ? WHERE id = ?");
    s.bind(1, state).bind(2, attempts).bind(3, next_attempt_at).bind(4, last_result).bind(5, relayed_path)
        .bind(6, relayed_path).bind(7, events::iso8601_utc(now)).bind(8, queue_id).run();
}

std::optional<queue_row> relay_db::find_queue_row(std::int64_t id) {
    std::lock_guard lock(mutex_);
    stmt s(db_, (std::string("SELECT ") + queue_columns + " FROM relay_queue WHERE id = ?").c_str());
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    return read_queue_row(s);
}

std::vector<queue_row> relay_db::list_queue(std::size_t limit) {
    std::lock_guard lock(mutex_);
    stmt s(db_, (std::string("SELECT ") + queue_columns + " FROM relay_queue ORDER BY id DESC LIMIT ?").c_str());
    s.bind(1, static_cast<std::int64_t>(limit));
    std::vector<queue_row> rows;
    while (s.step()) rows.push_back(read_queue_row(s));
    return rows;
}

std::map<std::string, std::uint64_t> relay_db::count_queue_by_state() {
    std::lock_guard lock(mutex_);
    stmt s(db_, "SELECT state, COUNT(*) FROM relay_queue GROUP BY state");
    std::map<std::string, std::uint64_t> counts;
    while (s.step()) counts[s.text(0)] += static_cast<std::uint64_t>(s.i64(1));
    return counts;
}

std::vector<queue_row> relay_db::queue_of_day(const std::string& day, std::size_t limit) {
    std::lock_guard lock(mutex_);
    // created_at is ISO 8601 UTC ("2026-11-23T18:07:03.123456Z"): that day's rows sort between
    // "<day>T" and "<day>U".
    stmt s(db_, (std::string("SELECT ") + queue_columns +
                 " FROM relay_queue WHERE created_at >= ?1 || 'T' AND created_at < ?1 || 'U' ORDER BY id LIMIT ?2")
                    .c_str());
    s.bind(1, day).bind(2, static_cast<std::int64_t>(limit));
    std::vector<queue_row> rows;
    while (s.step()) rows.push_back(read_queue_row(s));
    return rows;
}

std::optional<std::int64_t> relay_db::next_due_time(const std::set<std::int64_t>& in_flight) {
    std::lock_guard lock(mutex_);
    stmt s(db_, ("SELECT MIN(CASE WHEN state = 'sending' THEN lease_until ELSE next_attempt_at END) FROM relay_queue "
                 "WHERE state IN ('queued','deferred','sending')" + not_in_flight(in_flight))
                    .c_str());
    if (!s.step() || s.is_null(0)) return std::nullopt;
    return s.i64(0);
}

std::int64_t relay_db::insert_attempt(const attempt_row& a) {
    require_writable();
    std::lock_guard lock(mutex_);
    stmt s(db_,
           "INSERT INTO relay_attempts(queue_id, message_id, recipient, delivered_to, mx_host, ip, port, tls_version, "
           "tls_cipher, tls_verified, tls_verify_result, reply_code, reply_text, transcript, started_at, ended_at, "
           "outcome, test_mode) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    s.bind(1, a.queue_id).bind(2, a.message_id).bind(3, a.recipient).bind(4, a.delivered_to).bind(5, a.mx_host)
        .bind(6, a.ip).bind(7, static_cast<int>(a.port)).bind(8, a.tls_version).bind(9, a.tls_cipher)
        .bind(10, a.tls_verified).bind(11, a.tls_verify_result).bind(12, a.reply_code).bind(13, a.reply_text)
        .bind(14, a.transcript_json).bind(15, a.started_at).bind(16, a.ended_at).bind(17, a.outcome)
        .bind(18, a.test_mode).run();
    return sqlite3_last_insert_rowid(db_);
}

std::vector<attempt_row> relay_db::list_attempts(std::optional<std::int64_t> queue_id, std::size_t limit) {
    std::lock_guard lock(mutex_);
    std::string sql =
        "SELECT id, queue_id, message_id, recipient, delivered_to, mx_host, ip, port, tls_version, tls_cipher, "
        "tls_verified, tls_verify_result, reply_code, reply_text, transcript, started_at, ended_at, outcome, test_mode "
        "FROM relay_attempts";
    if (queue_id) sql += " WHERE queue_id = ?2";
    sql += " ORDER BY id LIMIT ?1";
    stmt s(db_, sql.c_str());
    s.bind(1, static_cast<std::int64_t>(limit));
    if (queue_id) s.bind(2, *queue_id);
    std::vector<attempt_row> rows;
    while (s.step()) {
        attempt_row a;
        a.id = s.i64(0);
        a.queue_id = s.i64(1);
        a.message_id = s.text(2);
        a.recipient = s.text(3);
        a.delivered_to = s.text(4);
        a.mx_host = s.text(5);
        a.ip = s.text(6);
        a.port = static_cast<std::uint16_t>(s.i64(7));
        a.tls_version = s.text(8);
        a.tls_cipher = s.text(9);
        a.tls_verified = s.i64(10) != 0;
        a.tls_verify_result = s.text(11);
        a.reply_code = static_cast<int>(s.i64(12));
        a.reply_text = s.text(13);
        a.transcript_json = s.text(14);
        a.started_at = s.text(15);
        a.ended_at = s.text(16);
        a.outcome = s.text(17);
        a.test_mode = s.i64(18) != 0;
        rows.push_back(std::move(a));
    }
    return rows;
}

std::vector<decision_row> relay_db::list_decisions(std::size_t limit) {
    std::lock_guard lock(mutex_);
    stmt s(db_, (std::string("SELECT ") + decision_columns + " FROM relay_decisions ORDER BY id DESC LIMIT ?").c_str());
    s.bind(1, static_cast<std::int64_t>(limit));
    std::vector<decision_row> rows;
    while (s.step()) rows.push_back(read_decision(s));
    return rows;
}

std::vector<decision_row> relay_db::decisions_of_day(const std::string& day, std::size_t limit) {
    std::lock_guard lock(mutex_);
    stmt s(db_, (std::string("SELECT ") + decision_columns + " FROM relay_decisions WHERE day = ? ORDER BY id LIMIT ?").c_str());
    s.bind(1, day).bind(2, static_cast<std::int64_t>(limit));
    std::vector<decision_row> rows;
    while (s.step()) rows.push_back(read_decision(s));
    return rows;
}

std::vector<std::string> relay_db::without_decision(const std::vector<std::string>& message_ids) {
    std::lock_guard lock(mutex_);
    stmt s(db_, "SELECT 1 FROM relay_decisions WHERE message_id = ? LIMIT 1");
    std::vector<std::string> missing;
    for (const auto& id : message_ids) {
        s.reset();
        s.bind(1, id);
        if (!s.step()) missing.push_back(id);
    }
    return missing;
}

}  // namespace relaybait::relay
