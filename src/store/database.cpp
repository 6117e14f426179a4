#include "store/database.hpp"

#include "common/background_thread.hpp"
#include "common/text.hpp"

#include "events/json_safe.hpp"
#include "store/store_log.hpp"

#include <boost/json.hpp>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

namespace relaybait::store {
namespace {

// Numbered migrations; each runs once, in order, inside the opening transaction.
// Never edit a released migration: add a new one.
constexpr const char* migrations[] = {
    // 1: initial schema
    R"sql(
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    sensor TEXT NOT NULL DEFAULT '',
    listener TEXT NOT NULL DEFAULT '',
    peer_ip TEXT NOT NULL DEFAULT '',
    peer_port INTEGER NOT NULL DEFAULT 0,
    local_ip TEXT NOT NULL DEFAULT '',
    local_port INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL DEFAULT '',
    ended_at TEXT,
    helo_verb TEXT NOT NULL DEFAULT '',
    helo_name TEXT NOT NULL DEFAULT '',
    tls_version TEXT NOT NULL DEFAULT '',
    tls_cipher TEXT NOT NULL DEFAULT '',
    transcript TEXT NOT NULL DEFAULT '[]',
    transcript_truncated INTEGER NOT NULL DEFAULT 0,
    bytes_in INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0,
    commands INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    messages INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_by_started ON sessions(started_at DESC);
CREATE INDEX sessions_by_peer ON sessions(peer_ip, started_at DESC);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    queue_id TEXT NOT NULL UNIQUE,
    session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL,
    received_at TEXT NOT NULL,
    peer_ip TEXT NOT NULL DEFAULT '',
    peer_port INTEGER NOT NULL DEFAULT 0,
    listener TEXT NOT NULL DEFAULT '',
    helo_name TEXT NOT NULL DEFAULT '',
    mail_from TEXT NOT NULL DEFAULT '',
    mail_parameters TEXT NOT NULL DEFAULT '',
    auth_username TEXT NOT NULL DEFAULT '',
    tls_version TEXT NOT NULL DEFAULT '',
    tls_cipher TEXT NOT NULL DEFAULT '',
    via_bdat INTEGER NOT NULL DEFAULT 0,
    folder TEXT NOT NULL DEFAULT '',
    maildir_path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT '',
    header_subject TEXT NOT NULL DEFAULT '',
    header_from TEXT NOT NULL DEFAULT '',
    header_to TEXT NOT NULL DEFAULT '',
    header_date TEXT NOT NULL DEFAULT '',
    header_message_id TEXT NOT NULL DEFAULT '',
    header_x_mailer TEXT NOT NULL DEFAULT '',
    header_user_agent TEXT NOT NULL DEFAULT ''
);
CREATE INDEX messages_by_session ON messages(session_id);
CREATE INDEX messages_by_peer ON messages(peer_ip, id DESC);
CREATE INDEX messages_by_sha256 ON messages(sha256);
CREATE INDEX messages_by_folder ON messages(folder, id DESC);
CREATE INDEX messages_by_received ON messages(received_at DESC);

CREATE TABLE recipients (
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    address TEXT NOT NULL,
    local_part TEXT NOT NULL,
    domain TEXT NOT NULL,
    PRIMARY KEY (message_id, position)
) WITHOUT ROWID;
CREATE INDEX recipients_by_domain ON recipients(domain);
CREATE INDEX recipients_by_address ON recipients(address);

CREATE TABLE credentials (
    id INTEGER PRIMARY KEY,
    session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL,
    peer_ip TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL DEFAULT '',
    listener TEXT NOT NULL DEFAULT '',
    mechanism TEXT NOT NULL DEFAULT '',
    authzid TEXT NOT NULL DEFAULT '',
    username TEXT NOT NULL DEFAULT '',
    password TEXT NOT NULL DEFAULT '',
    challenge TEXT NOT NULL DEFAULT '',
    raw TEXT NOT NULL DEFAULT '',
    accepted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX credentials_by_session ON credentials(session_id);
CREATE INDEX credentials_by_peer ON credentials(peer_ip, id DESC);
CREATE INDEX credentials_by_username ON credentials(username);
)sql",
    // 2: classification at DATA end (rule, kind, tags as a JSON array of strings, dropped) and
    // maildir_path nullable: a dropped message keeps its row but has no file, and several such
    // rows must not collide on the UNIQUE path. SQLite cannot relax NOT NULL in place, so the
    // table is rebuilt (SQLite's documented 12-step procedure; migrate() runs with foreign keys
    // off so that dropping the old table does not cascade into recipients).
    // Index for `kind` filters: partial (only classified rows pay for it on insert); queries
    // repeat its `kind <> ''` term so the planner can use it.
    R"sql(
CREATE TABLE messages_v2 (
    id INTEGER PRIMARY KEY,
    queue_id TEXT NOT NULL UNIQUE,
    session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL,
    received_at TEXT NOT NULL,
    peer_ip TEXT NOT NULL DEFAULT '',
    peer_port INTEGER NOT NULL DEFAULT 0,
    listener TEXT NOT NULL DEFAULT '',
    helo_name TEXT NOT NULL DEFAULT '',
    mail_from TEXT NOT NULL DEFAULT '',
    mail_parameters TEXT NOT NULL DEFAULT '',
    auth_username TEXT NOT NULL DEFAULT '',
    tls_version TEXT NOT NULL DEFAULT '',
    tls_cipher TEXT NOT NULL DEFAULT '',
    via_bdat INTEGER NOT NULL DEFAULT 0,
    folder TEXT NOT NULL DEFAULT '',
    maildir_path TEXT UNIQUE,
    size INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT '',
    header_subject TEXT NOT NULL DEFAULT '',
    header_from TEXT NOT NULL DEFAULT '',
    header_to TEXT NOT NULL DEFAULT '',
    header_date TEXT NOT NULL DEFAULT '',
    header_message_id TEXT NOT NULL DEFAULT '',
    header_x_mailer TEXT NOT NULL DEFAULT '',
    header_user_agent TEXT NOT NULL DEFAULT '',
    rule TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    dropped INTEGER NOT NULL DEFAULT 0
);
INSERT INTO messages_v2(id, queue_id, session_id, received_at, peer_ip, peer_port, listener, helo_name, mail_from,
    mail_parameters, auth_username, tls_version, tls_cipher, via_bdat, folder, maildir_path, size, sha256,
    header_subject, header_from, header_to, header_date, header_message_id, header_x_mailer, header_user_agent)
SELECT id, queue_id, session_id, received_at, peer_ip, peer_port, listener, helo_name, mail_from,
    mail_parameters, auth_username, tls_version, tls_cipher, via_bdat, folder, maildir_path, size, sha256,
    header_subject, header_from, header_to, header_date, header_message_id, header_x_mailer, header_user_agent
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;
CREATE INDEX messages_by_session ON messages(session_id);
CREATE INDEX messages_by_peer ON messages(peer_ip, id DESC);
CREATE INDEX messages_by_sha256 ON messages(sha256);
CREATE INDEX messages_by_folder ON messages(folder, id DESC);
CREATE INDEX messages_by_received ON messages(received_at DESC);
CREATE INDEX messages_by_kind ON messages(kind, id DESC) WHERE kind <> '';
)sql",
    // 3: relay_requested: the rule that filed the message at DATA end asked for a relay. Set
    // only by the server when it receives the message, never by `rules apply` or a later rules
    // change: the start-up recovery resubmits only these. Rows from before this version count
    // as not requested (fail closed: nothing is relayed because of an upgrade).
    R"sql(
ALTER TABLE messages ADD COLUMN relay_requested INTEGER NOT NULL DEFAULT 0;
)sql",
};
constexpr int latest_version = static_cast<int>(std::size(migrations));
constexpr std::size_t max_limit = 10'000;
// WAL checkpoints of a read-write connection run on a background thread with its own
// connection, never inside a COMMIT: the writer's wal_hook only wakes it once the WAL holds
// this many frames (16 MB: hot pages are copied back once per 4,000 frames). Should the checkpointer starve
// (the WAL never fully copied back because the writer never pauses) and the WAL pass the
// second bound, the writer checkpoints inline once, which lets the next transaction restart
// the WAL from its beginning.
constexpr int checkpoint_frames = 4000;
constexpr int inline_checkpoint_frames = 16 * checkpoint_frames;

std::optional<std::string> base64_decode(std::string_view in) {
    if (in.size() % 4 != 0) return std::nullopt;
    std::string out(in.size() / 4 * 3 + 1, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    if (n < 0) return std::nullopt;
    std::size_t len = static_cast<std::size_t>(n);
    if (!in.empty() && in.back() == '=') --len;
    if (in.size() >= 2 && in[in.size() - 2] == '=') --len;
    out.resize(len);
    return out;
}

// A JSON string exactly as boost::json::serialize writes it: '"' and '\\' escaped, control
// characters as \b \t \n \f \r or \u00xx, every other byte as it is.
void append_json_string(std::string& out, std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    std::size_t run = 0;  // start of the bytes not yet copied
    // Eight bytes at a time while none of them needs escaping (profiled: the byte loop was
    // ~13k instructions per session); a word holding one is then walked byte by byte below.
    constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    const auto word_is_plain = [](std::uint64_t w) {
        const std::uint64_t control = (w - ones * 0x20) & ~w & highs;  // some byte < 0x20
        const std::uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
        const std::uint64_t quote = (q - ones) & ~q & highs, backslash = (b - ones) & ~b & highs;
        return (control | quote | backslash) == 0;
    };
    std::size_t i = 0;
    for (;;) {
        while (i + 8 <= text.size()) {
            std::uint64_t w;
            std::memcpy(&w, text.data() + i, 8);
            if (!word_is_plain(w)) break;
            i += 8;
        }
        const std::size_t stop = std::min(text.size(), i + 8);
        for (; i < stop; ++i) {
            const auto c = static_cast<unsigned char>(text[i]);
            if (c >= 0x20 && c != '"' && c != '\\') continue;
            out.append(text.data() + run, i - run);
            run = i + 1;
            out += '\\';
            switch (c) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '\b': out += 'b'; break;
                case '\t': out += 't'; break;
                case '\n': out += 'n'; break;
                case '\f': out += 'f'; break;
                case '\r': out += 'r'; break;
                default:
                    out += "u00";
                    out += hex[c >> 4];
                    out += hex[c & 15];
            }
        }
        if (i >= text.size()) break;
    }
    out.append(text.data() + run, text.size() - run);
    out += '"';
}

// Written directly (was: a boost::json array of objects, then serialize; the same bytes).
std::string transcript_to_json(const std::vector<transcript_line>& lines) {
    std::string out;
    std::size_t guess = 2;
    for (const auto& line : lines) guess += line.at.size() + line.text.size() + 40;
    out.reserve(guess);
    out += '[';
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const auto& line = lines[i];
        if (i != 0) out += ',';
        out += "{\"at\":";
        if (events::is_valid_utf8(line.at)) append_json_string(out, line.at);
        else append_json_string(out, events::to_json_safe(line.at));
        out += ",\"dir\":";
        append_json_string(out, std::string_view(&line.direction, 1));
        out += ",\"text\":";
        if (events::is_valid_utf8(line.text)) {
            append_json_string(out, line.text);
        } else {
            append_json_string(out, events::to_json_safe(line.text));
            out += ",\"b64\":";
            append_json_string(out, text::base64_encode(line.text));
        }
        out += '}';
    }
    out += ']';
    return out;
}

// Tags: a JSON array of strings. Bytes that are not UTF-8 are kept as they are (read back with
// allow_invalid_utf8), like every other text column.
std::string tags_to_json(const std::vector<std::string>& tags) {
    if (tags.empty()) return "[]";
    boost::json::array array;
    array.reserve(tags.size());
    for (const auto& t : tags) array.emplace_back(t);
    return boost::json::serialize(array);
}

std::vector<std::string> tags_from_json(std::string_view text) {
    std::vector<std::string> tags;
    if (text.empty() || text == "[]") return tags;
    boost::json::parse_options options;
    options.allow_invalid_utf8 = true;
    boost::system::error_code ec;
    auto value = boost::json::parse(text, ec, {}, options);
    if (ec || !value.is_array()) return tags;
    for (const auto& item : value.as_array())
        if (item.is_string()) tags.emplace_back(item.get_string());
    return tags;
}

std::vector<transcript_line> transcript_from_json(std::string_view text) {
    std::vector<transcript_line> lines;
    boost::system::error_code ec;
    auto value = boost::json::parse(text, ec);
    if (ec || !value.is_array()) return lines;
    for (const auto& item : value.as_array()) {
        const auto* o = item.if_object();
        if (!o) continue;
        transcript_line line;
        if (auto* at = o->if_contains("at"); at && at->is_string()) line.at = std::string(at->get_string());
        if (auto* dir = o->if_contains("dir"); dir && dir->is_string() && !dir->get_string().empty())
            line.direction = dir->get_string()[0];
        std::optional<std::string> exact;
        if (auto* b64 = o->if_contains("b64"); b64 && b64->is_string()) exact = base64_decode(b64->get_string());
        if (exact) {
            line.text = std::move(*exact);
        } else if (auto* t = o->if_contains("text"); t && t->is_string()) {
            line.text = std::string(t->get_string());
        }
        lines.push_back(std::move(line));
    }
    return lines;
}

}  // namespace

// One prepared statement, reset and cleared on every use.
class statement {
public:
    statement(sqlite3_stmt* s, const std::string& file) : stmt_(s), file_(&file) {}
    // Reset when it goes out of scope: a statement left on a row keeps its read transaction
    // (and its WAL snapshot) open, which stops every checkpoint and lets the WAL grow forever.
    // Its bindings are cleared too: a bind_static pointer must not outlive the caller's string.
    ~statement() {
        if (!stmt_) return;
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }
    statement(const statement&) = delete;
    statement& operator=(const statement&) = delete;
    statement(statement&& other) noexcept : stmt_(other.stmt_), file_(other.file_) { other.stmt_ = nullptr; }
    sqlite3_stmt* get() const { return stmt_; }

    // SQLite copies the text, so any string is safe to bind, a temporary included.
    statement& bind(int i, std::string_view v) {
        check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
        return *this;
    }
    statement& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
    // Zero-copy, for the ingest hot path: SQLite keeps the pointer and reads it at each step.
    // Only for a string that outlives the statement's run (a field of the record being written,
    // or a local or parameter of the function that runs it); ~statement clears the bindings
    // before the pointer could dangle. A temporary does not compile.
    statement& bind_static(int i, const std::string& v) {
        check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC));
        return *this;
    }
    statement& bind_static(int, const std::string&&) = delete;
    statement& bind(int i, std::int64_t v) {
        check(sqlite3_bind_int64(stmt_, i, v));
        return *this;
    }
    statement& bind_null(int i) {
        check(sqlite3_bind_null(stmt_, i));
        return *this;
    }
    statement& bind_static_optional(int i, const std::optional<std::string>& v) {
        return v ? bind_static(i, *v) : bind_null(i);
    }
    statement& bind_static_optional(int, const std::optional<std::string>&&) = delete;
    // No session: NULL, which the foreign key to sessions(id) lets through.
    statement& bind_session(int i, const std::string& id) { return id.empty() ? bind_null(i) : bind(i, id); }
    statement& bind_static_session(int i, const std::string& id) {
        return id.empty() ? bind_null(i) : bind_static(i, id);
    }
    statement& bind_static_session(int, const std::string&&) = delete;

    bool step() {  // true: a row is available
        const int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        fail(rc);
    }
    void run() {
        while (step()) {
        }
    }
    std::string text(int col) const {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
        return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
    }
    bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
    std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }

private:
    void check(int rc) const {
        if (rc != SQLITE_OK) fail(rc);
    }
    [[noreturn]] void fail(int) const {
        sqlite3* db = sqlite3_db_handle(stmt_);
        throw std::runtime_error(*file_ + ": " + sqlite3_errmsg(db) + " (in: " + sqlite3_sql(stmt_) + ")");
    }
    sqlite3_stmt* stmt_;
    const std::string* file_;
};

struct database::impl {
    std::filesystem::path path;
    std::string file;  // path as text, for messages
    mode open_mode;
    sqlite3* db = nullptr;
    mutable std::mutex mutex;
    mutable std::unordered_map<std::string, sqlite3_stmt*> cache;
    int version = 0;

    // Background checkpointer (read_write only).
    std::mutex checkpoint_mutex;
    std::condition_variable checkpoint_wake;
    bool checkpoint_wanted = false;
    int requested_at_frames = 0;  // WAL size at the last wake-up (writer thread only, in the wal hook)
    bool checkpoint_stop = false;
    std::thread checkpointer;

    static int on_wal_commit(void* self, sqlite3* db, const char* schema, int frames) {
        auto* d = static_cast<impl*>(self);
        if (frames >= inline_checkpoint_frames) {
            sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        } else if (frames < checkpoint_frames) {
            d->requested_at_frames = 0;  // the WAL restarted: the next time past the bound wakes it
        } else {
            // Not on every commit past the bound: each checkpoint walks the whole WAL index even
            // when only a few frames are new (profiled: ~100k instructions a message at 1.4
            // messages per commit). Again once the WAL grew by a quarter of the bound, or
            // restarted since the last request.
            if (d->requested_at_frames == 0 || frames < d->requested_at_frames ||
                frames >= d->requested_at_frames + checkpoint_frames / 4) {
                d->requested_at_frames = frames;
                {
                    std::lock_guard lock(d->checkpoint_mutex);
                    d->checkpoint_wanted = true;
                }
                d->checkpoint_wake.notify_one();
            }
        }
        return SQLITE_OK;
    }

    void checkpoint_loop() {
        sqlite3* c = nullptr;
        if (sqlite3_open_v2(file.c_str(), &c, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
            sqlite3_close(c);
            c = nullptr;
        }
        if (c) {
            sqlite3_busy_timeout(c, 1000);
            sqlite3_exec(c, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
            sqlite3_wal_autocheckpoint(c, 0);
        }
        for (;;) {
            {
                std::unique_lock lock(checkpoint_mutex);
                checkpoint_wake.wait(lock, [&] { return checkpoint_stop || checkpoint_wanted; });
                if (checkpoint_stop) break;
                checkpoint_wanted = false;
            }
            if (c) sqlite3_wal_checkpoint_v2(c, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        }
        sqlite3_close_v2(c);
    }

    void start_checkpointer() {
        sqlite3_wal_hook(db, &impl::on_wal_commit, this);  // replaces SQLite's inline autocheckpoint
        checkpointer = std::thread([this] {
            threads::become_background_thread("rb-store-ckpt");
            checkpoint_loop();
        });
    }

    void stop_checkpointer() {
        if (!checkpointer.joinable()) return;
        {
            std::lock_guard lock(checkpoint_mutex);
            checkpoint_stop = true;
        }
        checkpoint_wake.notify_one();
        checkpointer.join();
        sqlite3_wal_hook(db, nullptr, nullptr);
    }

    [[noreturn]] void fail(std::string_view what) const {
        throw std::runtime_error(file + ": " + std::string(what) + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
    }

    void exec(const char* sql) const {
        char* err = nullptr;
        if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
            std::string message = err ? err : sqlite3_errmsg(db);
            sqlite3_free(err);
            throw std::runtime_error(file + ": " + message);
        }
    }

    // The hot statements are string literals: found by address first (no std::string built and
    // hashed per call), else through the text cache below.
    mutable std::unordered_map<const char*, sqlite3_stmt*> literal_cache;
    statement prepare(const char* sql) const {
        if (auto it = literal_cache.find(sql); it != literal_cache.end()) return statement(it->second, file);
        statement s = prepare(std::string(sql));
        literal_cache.emplace(sql, s.get());
        return s;
    }

    // Cached; ready to bind: the last user's ~statement reset it and cleared its bindings.
    statement prepare(const std::string& sql) const {
        auto it = cache.find(sql);
        if (it == cache.end()) {
            sqlite3_stmt* s = nullptr;
            if (sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &s,
                                   nullptr) != SQLITE_OK)
                fail("cannot prepare statement");
            it = cache.emplace(sql, s).first;
        }
        return statement(it->second, file);
    }

    int read_version() const {
        auto exists = prepare("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'");
        if (!exists.step()) return 0;
        auto q = prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
        q.step();
        return static_cast<int>(q.integer(0));
    }

    void migrate() {
        exec("BEGIN IMMEDIATE");
        try {
            exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)");
            int current = read_version();
            if (current > latest_version)
                throw std::runtime_error(file + ": schema version " + std::to_string(current) +
                                         " is newer than this relaybait (" + std::to_string(latest_version) + ")");
            for (int v = current + 1; v <= latest_version; ++v) {
                exec(migrations[v - 1]);
                prepare("INSERT INTO schema_migrations(version, applied_at) VALUES(?1, strftime('%Y-%m-%dT%H:%M:%fZ','now'))")
                    .bind(1, std::int64_t{v})
                    .run();
            }
            exec("COMMIT");
        } catch (...) {
            sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
            throw;
        }
        version = read_version();
    }

    impl(const std::filesystem::path& p, mode m) : path(p), file(p.string()), open_mode(m) {
        const int flags = (m == mode::read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                          SQLITE_OPEN_NOMUTEX;
        if (sqlite3_open_v2(file.c_str(), &db, flags, nullptr) != SQLITE_OK) {
            std::string message = db ? sqlite3_errmsg(db) : "out of memory";
            sqlite3_close(db);
            db = nullptr;
            throw std::runtime_error(file + ": cannot open database: " + message);
        }
        try {
            sqlite3_extended_result_codes(db, 1);
            sqlite3_busy_timeout(db, 10'000);
            if (m == mode::read_write) {
                exec("PRAGMA journal_mode=WAL");
                exec("PRAGMA synchronous=FULL");
                // Table rebuilds in migrations must not fire ON DELETE actions (the pragma is a
                // no-op inside a transaction, so it is switched around migrate()).
                exec("PRAGMA foreign_keys=OFF");
                migrate();
                exec("PRAGMA foreign_keys=ON");
                start_checkpointer();
            } else {
                exec("PRAGMA foreign_keys=ON");
                version = read_version();
                if (version == 0)
                    throw std::runtime_error(file + ": not a relaybait database (no schema_migrations)");
                if (version != latest_version)
                    throw std::runtime_error(file + ": schema version " + std::to_string(version) + ", this relaybait expects " +
                                             std::to_string(latest_version) + "; open it read-write (start the server) to migrate");
            }
        } catch (...) {
            close();
            throw;
        }
    }

    void close() {
        stop_checkpointer();  // the last connection to close checkpoints the WAL fully
        for (auto& [sql, s] : cache) sqlite3_finalize(s);
        cache.clear();
        literal_cache.clear();
        sqlite3_close_v2(db);
        db = nullptr;
    }

    ~impl() { close(); }

    void require_writable() const {
        if (open_mode != mode::read_write) throw std::runtime_error(file + ": database opened read-only");
    }

    // Runs per message: the arguments live until the caller's expression ends, after the run,
    // so they are not copied.
    void ensure_session_stub(const std::string& id, const std::string& listener, const std::string& peer_ip,
                             std::int64_t peer_port, const std::string& started_at) {
        if (id.empty()) return;
        prepare("INSERT INTO sessions(id, listener, peer_ip, peer_port, started_at) VALUES(?1,?2,?3,?4,?5) "
                "ON CONFLICT(id) DO NOTHING")
            .bind_static(1, id).bind_static(2, listener).bind_static(3, peer_ip).bind(4, peer_port)
            .bind_static(5, started_at)
            .run();
    }

    static constexpr const char* message_columns =
        "id, queue_id, session_id, received_at, peer_ip, peer_port, listener, helo_name, mail_from, "
        "mail_parameters, auth_username, tls_version, tls_cipher, via_bdat, folder, maildir_path, size, sha256, "
        "header_subject, header_from, header_to, header_date, header_message_id, header_x_mailer, header_user_agent, "
        "rule, kind, tags, dropped, relay_requested";

    message_record read_message(const statement& s) const {
        message_record m;
        int c = 0;
        m.id = s.integer(c++);
        m.queue_id = s.text(c++);
        m.session_id = s.text(c++);
        m.received_at = s.text(c++);
        m.peer_ip = s.text(c++);
        m.peer_port = static_cast<std::uint16_t>(s.integer(c++));
        m.listener = s.text(c++);
        m.helo_name = s.text(c++);
        m.mail_from = s.text(c++);
        m.mail_parameters = s.text(c++);
        m.auth_username = s.text(c++);
        m.tls_version = s.text(c++);
        m.tls_cipher = s.text(c++);
        m.via_bdat = s.integer(c++) != 0;
        m.folder = s.text(c++);
        m.maildir_path = s.text(c++);
        m.size = static_cast<std::uint64_t>(s.integer(c++));
        m.sha256 = s.text(c++);
        m.headers.subject = s.text(c++);
        m.headers.from = s.text(c++);
        m.headers.to = s.text(c++);
        m.headers.date = s.text(c++);
        m.headers.message_id = s.text(c++);
        m.headers.x_mailer = s.text(c++);
        m.headers.user_agent = s.text(c++);
        m.rule = s.text(c++);
        m.kind = s.text(c++);
        m.tags = tags_from_json(s.text(c++));
        m.dropped = s.integer(c++) != 0;
        m.relay_requested = s.integer(c++) != 0;
        auto r = prepare("SELECT address FROM recipients WHERE message_id=?1 ORDER BY position");
        r.bind(1, m.id);
        while (r.step()) m.recipients.push_back(r.text(0));
        return m;
    }

    static constexpr const char* session_columns =
        "id, sensor, listener, peer_ip, peer_port, local_ip, local_port, started_at, ended_at, helo_verb, "
        "helo_name, tls_version, tls_cipher, transcript_truncated, bytes_in, bytes_out, commands, errors, "
        "messages, outcome";

    static session_record read_session(const statement& s) {
        session_record r;
        int c = 0;
        r.id = s.text(c++);
        r.sensor = s.text(c++);
        r.listener = s.text(c++);
        r.peer_ip = s.text(c++);
        r.peer_port = static_cast<std::uint16_t>(s.integer(c++));
        r.local_ip = s.text(c++);
        r.local_port = static_cast<std::uint16_t>(s.integer(c++));
        r.started_at = s.text(c++);
        if (!s.is_null(c)) r.ended_at = s.text(c);
        ++c;
        r.helo_verb = s.text(c++);
        r.helo_name = s.text(c++);
        r.tls_version = s.text(c++);
        r.tls_cipher = s.text(c++);
        r.transcript_truncated = s.integer(c++) != 0;
        r.bytes_in = static_cast<std::uint64_t>(s.integer(c++));
        r.bytes_out = static_cast<std::uint64_t>(s.integer(c++));
        r.commands = static_cast<std::uint32_t>(s.integer(c++));
        r.errors = static_cast<std::uint32_t>(s.integer(c++));
        r.messages = static_cast<std::uint32_t>(s.integer(c++));
        r.outcome = s.text(c++);
        return r;
    }

    // WHERE clause built from fixed fragments only; every value is a bound parameter.
    struct where {
        std::string sql;
        std::vector<std::string> values;
        void add(const char* column, const std::optional<std::string>& v, const char* op = "=") {
            if (!v) return;
            sql += sql.empty() ? " WHERE " : " AND ";
            sql += column;
            sql += op;
            sql += "?" + std::to_string(values.size() + 1);
            values.push_back(*v);
        }
        // kind=? plus the partial index's own term, so messages_by_kind is usable ("" = unclassified).
        void add_kind(const std::optional<std::string>& v) {
            add("kind", v);
            if (v && !v->empty()) sql += " AND kind<>''";
        }
        std::string tail(const char* order) const {
            return sql + " ORDER BY " + order + " LIMIT ?" + std::to_string(values.size() + 1) + " OFFSET ?" +
                   std::to_string(values.size() + 2);
        }
        void bind(statement& s, const list_filter& f) const {
            int i = 1;
            for (const auto& v : values) s.bind(i++, v);
            s.bind(i++, static_cast<std::int64_t>(std::min(f.limit, max_limit)));
            s.bind(i, static_cast<std::int64_t>(f.offset));
        }
    };
};

bool configure_sqlite_for_server() {
    static std::once_flag once;
    static bool applied = false;
    std::call_once(once, [] {
        const int rc = sqlite3_config(SQLITE_CONFIG_PAGECACHE, nullptr, 0, 0);
        applied = rc == SQLITE_OK;
        if (rc == SQLITE_MISUSE)
            detail::log_debug("SQLite was initialised before its page cache could be configured: "
                              "connections keep the bulk page-cache preallocation");
        else if (!applied)
            detail::log_warning(std::string("sqlite3_config(SQLITE_CONFIG_PAGECACHE): ") + sqlite3_errstr(rc));
    });
    return applied;
}

database::database(const std::filesystem::path& file, mode open_mode)
    : impl_(std::make_unique<impl>(file, open_mode)) {}
database::~database() = default;

int database::schema_version() const { return impl_->version; }
int database::latest_schema_version() { return latest_version; }
const std::filesystem::path& database::file() const { return impl_->path; }

void database::begin() {
    std::lock_guard lock(impl_->mutex);
    impl_->require_writable();
    impl_->prepare("BEGIN IMMEDIATE").run();  // prepared once: this runs per group commit
}
void database::commit() {
    std::lock_guard lock(impl_->mutex);
    impl_->prepare("COMMIT").run();
}
void database::rollback() {
    std::lock_guard lock(impl_->mutex);
    if (!sqlite3_get_autocommit(impl_->db)) impl_->exec("ROLLBACK");
}

void database::savepoint() {
    std::lock_guard lock(impl_->mutex);
    impl_->prepare("SAVEPOINT relaybait_row").run();  // prepared once: this runs per message
}
void database::release_savepoint() {
    std::lock_guard lock(impl_->mutex);
    impl_->prepare("RELEASE relaybait_row").run();
}
void database::rollback_to_savepoint() {
    std::lock_guard lock(impl_->mutex);
    impl_->exec("ROLLBACK TO relaybait_row");
    impl_->exec("RELEASE relaybait_row");
}

std::int64_t database::insert_message(const message_record& m) {
    std::lock_guard lock(impl_->mutex);
    impl_->require_writable();
    auto& d = *impl_;
    d.ensure_session_stub(m.session_id, m.listener, m.peer_ip, m.peer_port, m.received_at);
    auto s = d.prepare(
        "INSERT INTO messages(queue_id, session_id, received_at, peer_ip, peer_port, listener, helo_name, mail_from, "
        "mail_parameters, auth_username, tls_version, tls_cipher, via_bdat, folder, maildir_path, size, sha256, "
        "header_subject, header_from, header_to, header_date, header_message_id, header_x_mailer, header_user_agent, "
        "rule, kind, tags, dropped, relay_requested) "
        "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,"
        "?29)");
    // Runs per message: the record's strings outlive the run, so they are not copied.
    s.bind_static(1, m.queue_id).bind_static_session(2, m.session_id).bind_static(3, m.received_at)
        .bind_static(4, m.peer_ip).bind(5, std::int64_t{m.peer_port}).bind_static(6, m.listener)
        .bind_static(7, m.helo_name).bind_static(8, m.mail_from).bind_static(9, m.mail_parameters)
        .bind_static(10, m.auth_username).bind_static(11, m.tls_version).bind_static(12, m.tls_cipher)
        .bind(13, std::int64_t{m.via_bdat}).bind_static(14, m.folder)
        .bind(16, static_cast<std::int64_t>(m.size)).bind_static(17, m.sha256).bind_static(18, m.headers.subject)
        .bind_static(19, m.headers.from).bind_static(20, m.headers.to).bind_static(21, m.headers.date)
        .bind_static(22, m.headers.message_id).bind_static(23, m.headers.x_mailer)
        .bind_static(24, m.headers.user_agent).bind_static(25, m.rule).bind_static(26, m.kind)
        .bind(28, std::int64_t{m.dropped}).bind(29, std::int64_t{m.relay_requested});
    static const std::string no_tags = "[]";
    if (m.tags.empty()) s.bind_static(27, no_tags);
    else s.bind(27, tags_to_json(m.tags));
    // No file (dropped): NULL, so that such rows do not collide on the UNIQUE path.
    if (m.maildir_path.empty()) s.bind_null(15);
    else s.bind_static(15, m.maildir_path);
    s.run();
    const std::int64_t id = sqlite3_last_insert_rowid(d.db);
    std::int64_t position = 0;
    for (const auto& address : m.recipients) {
        const auto at = address.rfind('@');
        const std::string local = at == std::string::npos ? address : address.substr(0, at);
        const std::string domain = text::lowercase(at == std::string::npos ? std::string_view() : std::string_view(address).substr(at + 1));
        d.prepare("INSERT INTO recipients(message_id, position, address, local_part, domain) VALUES(?1,?2,?3,?4,?5)")
            .bind(1, id).bind(2, position++).bind_static(3, address).bind_static(4, local).bind_static(5, domain)
            .run();
    }
    return id;
}

void database::upsert_session(const session_record& r) {
    std::lock_guard lock(impl_->mutex);
    impl_->require_writable();
    auto& d = *impl_;
    const std::string transcript = transcript_to_json(r.transcript);
    // Runs per session: the record's strings and the transcript outlive both statements' runs,
    // so they are not copied.
    const auto bind_all = [&](statement& s) {
        s.bind_static(1, r.id).bind_static(2, r.sensor).bind_static(3, r.listener).bind_static(4, r.peer_ip)
            .bind(5, std::int64_t{r.peer_port}).bind_static(6, r.local_ip).bind(7, std::int64_t{r.local_port})
            .bind_static(8, r.started_at).bind_static_optional(9, r.ended_at).bind_static(10, r.helo_verb)
            .bind_static(11, r.helo_name).bind_static(12, r.tls_version).bind_static(13, r.tls_cipher)
            .bind_static(14, transcript).bind(15, std::int64_t{r.transcript_truncated})
            .bind(16, static_cast<std::int64_t>(r.bytes_in)).bind(17, static_cast<std::int64_t>(r.bytes_out))
            .bind(18, std::int64_t{r.commands}).bind(19, std::int64_t{r.errors}).bind(20, std::int64_t{r.messages})
            .bind_static(21, r.outcome);
    };
    // The usual case: the row exists as a stub (its first message came before the session
    // ended): a plain UPDATE of it. The INSERT ... ON CONFLICT DO UPDATE below first tried the
    // insert and built its record before taking the update path (profiled). Only for a
    // session not yet stored. The indexed columns (peer_ip, started_at) are matched, not set:
    // SQLite rewrites the entry of every index whose column is assigned, even to its value.
    {
        auto s = d.prepare(
            "UPDATE sessions SET sensor=?2, listener=?3, "
            "peer_port=?5, local_ip=?6, local_port=?7, ended_at=?9, helo_verb=?10, helo_name=?11, "
            "tls_version=?12, tls_cipher=?13, transcript=?14, transcript_truncated=?15, bytes_in=?16, bytes_out=?17, "
            "commands=?18, errors=?19, messages=?20, outcome=?21 WHERE id=?1 AND peer_ip=?4 AND started_at=?8");
        bind_all(s);
        s.run();
        if (sqlite3_changes(d.db) > 0) return;
    }
    auto s = d.prepare(
        "INSERT INTO sessions(id, sensor, listener, peer_ip, peer_port, local_ip, local_port, started_at, ended_at, "
        "helo_verb, helo_name, tls_version, tls_cipher, transcript, transcript_truncated, bytes_in, bytes_out, "
        "commands, errors, messages, outcome) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,"
        "?19,?20,?21) ON CONFLICT(id) DO UPDATE SET sensor=excluded.sensor, listener=excluded.listener, "
        "peer_ip=excluded.peer_ip, peer_port=excluded.peer_port, local_ip=excluded.local_ip, "
        "local_port=excluded.local_port, started_at=excluded.started_at, ended_at=excluded.ended_at, "
        "helo_verb=excluded.helo_verb, helo_name=excluded.helo_name, tls_version=excluded.tls_version, "
        "tls_cipher=excluded.tls_cipher, transcript=excluded.transcript, "
        "transcript_truncated=excluded.transcript_truncated, bytes_in=excluded.bytes_in, "
        "bytes_out=excluded.bytes_out, commands=excluded.commands, errors=excluded.errors, "
        "messages=excluded.messages, outcome=excluded.outcome");
    bind_all(s);
    s.run();
}

std::int64_t database::insert_credential(const credential_record& c) {
    std::lock_guard lock(impl_->mutex);
    impl_->require_writable();
    auto& d = *impl_;
    d.ensure_session_stub(c.session_id, c.listener, c.peer_ip, 0, c.at);
    d.prepare("INSERT INTO credentials(session_id, peer_ip, at, listener, mechanism, authzid, username, password, "
              "challenge, raw, accepted) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)")
        .bind_session(1, c.session_id).bind(2, c.peer_ip).bind(3, c.at).bind(4, c.listener).bind(5, c.mechanism)
        .bind(6, c.authzid).bind(7, c.username).bind(8, c.password).bind(9, c.challenge).bind(10, c.raw)
        .bind(11, std::int64_t{c.accepted})
        .run();
    return sqlite3_last_insert_rowid(d.db);
}

std::vector<message_record> database::list_messages(const list_filter& f) const {
    std::lock_guard lock(impl_->mutex);
    impl::where w;
    w.add("session_id", f.session_id);
    w.add("peer_ip", f.peer_ip);
    w.add("folder", f.folder);
    w.add("received_at", f.since, ">=");
    w.add_kind(f.kind);
    auto s = impl_->prepare(std::string("SELECT ") + impl::message_columns + " FROM messages" + w.tail("id DESC"));
    w.bind(s, f);
    std::vector<message_record> out;
    while (s.step()) out.push_back(impl_->read_message(s));
    return out;
}

std::optional<message_record> database::find_message(std::int64_t id) const {
    std::lock_guard lock(impl_->mutex);
    auto s = impl_->prepare(std::string("SELECT ") + impl::message_columns + " FROM messages WHERE id=?1");
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    return impl_->read_message(s);
}

std::optional<message_record> database::find_message_by_queue_id(const std::string& queue_id) const {
    std::lock_guard lock(impl_->mutex);
    auto s = impl_->prepare(std::string("SELECT ") + impl::message_columns + " FROM messages WHERE queue_id=?1");
    s.bind(1, queue_id);
    if (!s.step()) return std::nullopt;
    return impl_->read_message(s);
}

std::optional<message_record> database::find_message_by_reference(const std::string& reference) const {
    const bool id = !reference.empty() && reference.size() <= 18 &&
                    reference.find_first_not_of("0123456789") == std::string::npos;
    if (id)
        if (auto found = find_message(std::stoll(reference))) return found;
    return find_message_by_queue_id(reference);
}

std::vector<session_record> database::list_sessions(const list_filter& f) const {
    std::lock_guard lock(impl_->mutex);
    impl::where w;
    w.add("id", f.session_id);
    w.add("peer_ip", f.peer_ip);
    auto s = impl_->prepare(std::string("SELECT ") + impl::session_columns + " FROM sessions" +
                            w.tail("started_at DESC, rowid DESC"));
    w.bind(s, f);
    std::vector<session_record> out;
    while (s.step()) out.push_back(impl::read_session(s));
    return out;
}

std::optional<session_record> database::find_session(const std::string& id) const {
    std::lock_guard lock(impl_->mutex);
    auto s = impl_->prepare(std::string("SELECT ") + impl::session_columns + ", transcript FROM sessions WHERE id=?1");
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    auto r = impl::read_session(s);
    r.transcript = transcript_from_json(s.text(20));
    return r;
}

std::vector<credential_record> database::list_credentials(const list_filter& f) const {
    std::lock_guard lock(impl_->mutex);
    impl::where w;
    w.add("session_id", f.session_id);
    w.add("peer_ip", f.peer_ip);
    auto s = impl_->prepare("SELECT id, session_id, peer_ip, at, listener, mechanism, authzid, username, password, "
                            "challenge, raw, accepted FROM credentials" + w.tail("id DESC"));
    w.bind(s, f);
    std::vector<credential_record> out;
    while (s.step()) {
        credential_record c;
        int i = 0;
        c.id = s.integer(i++);
        c.session_id = s.text(i++);
        c.peer_ip = s.text(i++);
        c.at = s.text(i++);
        c.listener = s.text(i++);
        c.mechanism = s.text(i++);
        c.authzid = s.text(i++);
        c.username = s.text(i++);
        c.password = s.text(i++);
        c.challenge = s.text(i++);
        c.raw = s.text(i++);
        c.accepted = s.integer(i++) != 0;
        out.push_back(std::move(c));
    }
    return out;
}

bool database::has_maildir_path(const std::string& maildir_path) const {
    std::lock_guard lock(impl_->mutex);
    auto s = impl_->prepare("SELECT 1 FROM messages WHERE maildir_path=?1");
    s.bind(1, maildir_path);
    return s.step();
}

std::uint64_t database::count_messages() const {
    std::lock_guard lock(impl_->mutex);
    auto s = impl_->prepare("SELECT COUNT(*) FROM messages");
    s.step();
    return static_cast<std::uint64_t>(s.integer(0));
}
std::uint64_t database::count_sessions() const {
    std::lock_guard lock(impl_->mutex);
    auto s = impl_->prepare("SELECT COUNT(*) FROM sessions");
    s.step();
    return static_cast<std::uint64_t>(s.integer(0));
}
std::uint64_t database::count_credentials() const {
    std::lock_guard lock(impl_->mutex);
    auto s = impl_->prepare("SELECT COUNT(*) FROM credentials");
    s.step();
    return static_cast<std::uint64_t>(s.integer(0));
}

// ---- operator edits (message_admin) and statistics ------------------------------------

bool database::update_message_location(std::int64_t id, const std::string& folder, const std::string& maildir_path) {
    std::lock_guard lock(impl_->mutex);
    impl_->require_writable();
    impl_->prepare("UPDATE messages SET folder=?2, maildir_path=?3 WHERE id=?1")
        .bind(1, id).bind(2, folder).bind(3, maildir_path)
        .run();
    return sqlite3_changes(impl_->db) > 0;
}

bool database::relocate_maildir_path(const std::string& old_path, const std::string& folder,
                                     const std::string& new_path) {
    std::lock_guard lock(impl_->mutex);
    impl_->require_writable();
    impl_->prepare("UPDATE messages SET folder=?2, maildir_path=?3 WHERE maildir_path=?1")
        .bind(1, old_path).bind(2, folder).bind(3, new_path)
        .run();
    return sqlite3_changes(impl_->db) > 0;
}

std::optional<std::vector<std::string>> database::add_message_tags(std::int64_t id,
                                                                   const std::vector<std::string>& tags) {
    std::lock_guard lock(impl_->mutex);
    impl_->require_writable();
    auto& d = *impl_;
    // Read-modify-write in one IMMEDIATE transaction: two concurrent editors cannot lose a tag.
    const bool own = sqlite3_get_autocommit(d.db) != 0;
    if (own) d.exec("BEGIN IMMEDIATE");
    try {
        std::optional<std::vector<std::string>> result;
        {
            auto s = d.prepare("SELECT tags FROM messages WHERE id=?1");
            s.bind(1, id);
            if (s.step()) result = tags_from_json(s.text(0));
        }
        if (result) {
            bool changed = false;
            for (const auto& t : tags) {
                if (std::find(result->begin(), result->end(), t) != result->end()) continue;
                result->push_back(t);
                changed = true;
            }
            if (changed) d.prepare("UPDATE messages SET tags=?2 WHERE id=?1").bind(1, id).bind(2, tags_to_json(*result)).run();
        }
        if (own) d.exec("COMMIT");
        return result;
    } catch (...) {
        if (own && !sqlite3_get_autocommit(d.db)) sqlite3_exec(d.db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

bool database::mark_message_dropped(std::int64_t id) {
    std::lock_guard lock(impl_->mutex);
    impl_->require_writable();
    impl_->prepare("UPDATE messages SET dropped=1, maildir_path=NULL WHERE id=?1").bind(1, id).run();
    return sqlite3_changes(impl_->db) > 0;
}

bool database::delete_message(std::int64_t id) {
    std::lock_guard lock(impl_->mutex);
    impl_->require_writable();
    impl_->prepare("DELETE FROM messages WHERE id=?1").bind(1, id).run();  // recipients cascade
    return sqlite3_changes(impl_->db) > 0;
}

void database::sync_each_commit(bool full) {
    std::lock_guard lock(impl_->mutex);
    impl_->require_writable();
    impl_->exec(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
}

int database::synchronous_level() const {
    std::lock_guard lock(impl_->mutex);
    auto s = impl_->prepare("PRAGMA synchronous");
    s.step();
    return static_cast<int>(s.integer(0));
}

void database::release_memory() {
    std::lock_guard lock(impl_->mutex);
    sqlite3_db_release_memory(impl_->db);
}

bool database::set_message_rule(std::int64_t id, const std::string& rule, const std::string& kind) {
    std::lock_guard lock(impl_->mutex);
    impl_->require_writable();
    impl_->prepare("UPDATE messages SET rule=?2, kind=?3 WHERE id=?1").bind(1, id).bind(2, rule).bind(3, kind).run();
    return sqlite3_changes(impl_->db) > 0;
}

message_statistics database::message_stats(std::optional<std::string> since, std::size_t top) const {
    std::lock_guard lock(impl_->mutex);
    auto& d = *impl_;
    // One read transaction, so the numbers agree with each other while the server writes.
    const bool own = sqlite3_get_autocommit(d.db) != 0;
    if (own) d.exec("BEGIN");
    message_statistics out;
    try {
        const std::string where = since ? " WHERE received_at>=?1" : "";
        const auto bind_since = [&](statement& s, int limit_index) {
            if (since) s.bind(1, *since);
            if (limit_index) s.bind(limit_index, static_cast<std::int64_t>(std::min(top, max_limit)));
        };
        {
            auto s = d.prepare("SELECT COUNT(*), COALESCE(SUM(dropped), 0) FROM messages" + where);
            bind_since(s, 0);
            if (s.step()) {
                out.total = static_cast<std::uint64_t>(s.integer(0));
                out.dropped = static_cast<std::uint64_t>(s.integer(1));
            }
        }
        const auto group = [&](const char* column, const std::string& extra, bool limited,
                               std::vector<std::pair<std::string, std::uint64_t>>& into) {
            const int limit_index = limited ? (since ? 2 : 1) : 0;
            std::string sql = std::string("SELECT ") + column + ", COUNT(*) AS n FROM messages" + where;
            if (!extra.empty()) sql += (where.empty() ? " WHERE " : " AND ") + extra;
            sql += std::string(" GROUP BY ") + column + " ORDER BY n DESC, " + column;
            if (limited) sql += " LIMIT ?" + std::to_string(limit_index);
            auto s = d.prepare(sql);
            bind_since(s, limit_index);
            while (s.step()) into.emplace_back(s.text(0), static_cast<std::uint64_t>(s.integer(1)));
        };
        group("folder", "dropped=0", false, out.by_folder);
        group("kind", "", false, out.by_kind);
        group("peer_ip", "", true, out.top_client_ips);
        group("mail_from", "", true, out.top_senders);
        if (own) d.exec("COMMIT");
    } catch (...) {
        if (own && !sqlite3_get_autocommit(d.db)) sqlite3_exec(d.db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
    return out;
}

}  // namespace relaybait::store
