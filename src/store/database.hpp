#pragma once
// The SQLite database (DATA/relaybait.db, WAL). Schema versioned by numbered migrations
// applied at open. The write path lives in ingest; this class is what readers use
// (the CLI, later the web API) and what ingest uses underneath.
//
// Opening read_write creates the file, sets WAL, synchronous=FULL, foreign keys, a busy
// timeout, and applies the numbered migrations (schema_migrations) in one IMMEDIATE
// transaction, so two processes opening at once cannot both migrate. read_only opens with
// SQLITE_OPEN_READONLY and works while the server writes (WAL); it refuses a database whose
// schema is older or newer than this build knows. Every call takes an internal mutex, so
// one instance may be called from several threads (ingest's committer runs the write path,
// the io thread may call release_memory), but they then wait for each other: readers and
// other processes open their own.
//
// Messages and credentials reference sessions(id): when their session row is not written
// yet, a stub (id, listener, peer, started_at) is inserted and later completed by
// upsert_session. Transcripts are stored as JSON text
// [{"at":..,"dir":"C","text":..}] where "text" is valid UTF-8 (ill-formed bytes shown as
// U+FFFD) and, only when the line was not valid UTF-8, "b64" holds the exact bytes; reads
// return the exact bytes. Other text columns keep the bytes as received (attacker data: a
// reader that prints JSON must sanitise, see events/json_safe.hpp).
// list_filter: session_id and peer_ip apply to every list, folder, since and kind to messages
// only; limit is capped at 10,000.
//
// Added (classification, message_admin, `relaybait stats`): schema version 2 adds
// messages.{rule, kind, tags (JSON array), dropped} and makes maildir_path NULL for dropped
// rows (read back as ""); a partial index messages_by_kind (only classified rows) serves the
// kind filter. The operator edits below are each one short transaction (autocommit, or
// BEGIN IMMEDIATE for read-modify-write), safe on a read_write connection while the server runs.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "store/records.hpp"

namespace relaybait::store {

struct list_filter {
    std::size_t limit = 50;
    std::size_t offset = 0;
    std::optional<std::string> session_id;
    std::optional<std::string> peer_ip;
    std::optional<std::string> folder;
    std::optional<std::string> since;  // received_at >= since (ISO 8601 prefix: "2026-11-23" works)
    std::optional<std::string> kind;   // messages classified with this rule kind ("probe")
};

// `relaybait stats`: counts over messages received at or after `since` (all when nullopt).
// by_folder counts the messages still filed (dropped ones excluded), "" = the inbox; by_kind
// counts every message, "" = unclassified; top_* are limited to `top` entries. Each list is
// sorted by count, largest first (ties by name).
struct message_statistics {
    std::uint64_t total = 0, dropped = 0;
    std::vector<std::pair<std::string, std::uint64_t>> by_folder, by_kind, top_client_ips, top_senders;
};

// Process-wide SQLite set-up for the server, once, before the first connection opens (later
// calls do nothing): no bulk preallocation of 20 cache pages per connection (~87 KB each, all
// touched when carved up at the first read); every connection allocates its cache pages one
// by one as it reads, up to the same cache_size. When SQLite was already initialised (a
// connection opened first), SQLite refuses the change (harmless: the default stays; logged
// once at debug level) and this returns false. Call it before any thread uses SQLite:
// sqlite3_config is not thread-safe (the call_once inside serialises only this function, not
// it against SQLite used elsewhere).
bool configure_sqlite_for_server();

class database {
public:
    enum class mode { read_write, read_only };
    // Throws std::runtime_error naming the file and SQLite's message on failure.
    database(const std::filesystem::path& file, mode open_mode);
    ~database();
    database(const database&) = delete;
    database& operator=(const database&) = delete;

    int schema_version() const;
    static int latest_schema_version();  // the version this build migrates to
    const std::filesystem::path& file() const;

    // Writes (used by ingest in one transaction per batch).
    void begin();
    void commit();
    void rollback();
    // Added: one nested savepoint inside begin()/commit() (ingest: one per message, so a bad
    // row fails only its message).
    void savepoint();
    void release_savepoint();
    void rollback_to_savepoint();  // and releases it
    std::int64_t insert_message(const message_record& message);  // also inserts recipients
    void upsert_session(const session_record& session);
    std::int64_t insert_credential(const credential_record& credential);

    // Reads, newest first.
    std::vector<message_record> list_messages(const list_filter& filter) const;
    std::optional<message_record> find_message(std::int64_t id) const;
    std::optional<message_record> find_message_by_queue_id(const std::string& queue_id) const;
    // What an operator or a relay row names a message by: its database id when `reference` is
    // one (digits), else, or when no row has that id, its queue id.
    std::optional<message_record> find_message_by_reference(const std::string& reference) const;
    std::vector<session_record> list_sessions(const list_filter& filter) const;  // transcript left empty
    std::optional<session_record> find_session(const std::string& id) const;      // with transcript
    std::vector<credential_record> list_credentials(const list_filter& filter) const;

    // Added for ingest's recovery and for stats.
    bool has_maildir_path(const std::string& maildir_path) const;
    std::uint64_t count_messages() const;
    std::uint64_t count_sessions() const;
    std::uint64_t count_credentials() const;

    // Added for message_admin (store/message_admin.hpp) and recovery; false when no such row.
    bool update_message_location(std::int64_t id, const std::string& folder, const std::string& maildir_path);
    // The row at old_path now lives at new_path in `folder` (recovery of an interrupted move).
    bool relocate_maildir_path(const std::string& old_path, const std::string& folder, const std::string& new_path);
    // Appends the tags not already present, atomically; the resulting tags, nullopt when no row.
    std::optional<std::vector<std::string>> add_message_tags(std::int64_t id, const std::vector<std::string>& tags);
    bool mark_message_dropped(std::int64_t id);  // dropped = 1, maildir_path empty
    bool delete_message(std::int64_t id);         // the row and its recipients (recovery)
    // true (the default): COMMIT fsyncs the WAL (synchronous=FULL). false: synchronous=NORMAL,
    // for a caller that makes the WAL durable itself after COMMIT (ingest's syncfs).
    void sync_each_commit(bool full);
    // This connection's PRAGMA synchronous: 1 NORMAL, 2 FULL (what sync_each_commit chose).
    int synchronous_level() const;
    // Frees this connection's page cache; it refills from the file as pages are read again.
    void release_memory();
    bool set_message_rule(std::int64_t id, const std::string& rule, const std::string& kind);

    message_statistics message_stats(std::optional<std::string> since, std::size_t top = 10) const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace relaybait::store
