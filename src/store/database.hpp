#pragma once
// The SQLite database (DATA/relaybait.db, WAL). Schema versioned by numbered migrations
// applied at open. The write path lives in ingest; this class is what readers use
// (the CLI, later the web API) and what ingest uses underneath.
//
// Opening read_write creates the file, sets WAL, synchronous=FULL, foreign keys, a busy
// timeout, and applies the numbered migrations (schema_migrations) in one IMMEDIATE
// transaction, so two processes opening at once cannot both migrate. read_only opens with
// SQLITE_OPEN_READONLY and works while the server writes (WAL); it refuses a database whose
// schema is older or newer than this build knows. One instance is not meant to be shared
// by threads (calls are serialised by an internal mutex); open one per thread/process.
//
// Messages and credentials reference sessions(id): when their session row is not written
// yet, a stub (id, listener, peer, started_at) is inserted and later completed by
// upsert_session. Transcripts are stored as JSON text
// [{"at":..,"dir":"C","text":..}] where "text" is valid UTF-8 (ill-formed bytes shown as
// U+FFFD) and, only when the line was not valid UTF-8, "b64" holds the exact bytes; reads
// return the exact bytes. Other text columns keep the bytes as received (attacker data: a
// reader that prints JSON must sanitise, see events/json_safe.hpp).
// list_filter: session_id and peer_ip apply to every list, folder to messages only;
// limit is capped at 10,000.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
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
    std::vector<session_record> list_sessions(const list_filter& filter) const;  // transcript left empty
    std::optional<session_record> find_session(const std::string& id) const;      // with transcript
    std::vector<credential_record> list_credentials(const list_filter& filter) const;

    // Added for ingest's recovery and for stats.
    bool has_maildir_path(const std::string& maildir_path) const;
    std::uint64_t count_messages() const;
    std::uint64_t count_sessions() const;
    std::uint64_t count_credentials() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace relaybait::store
