#pragma once
// The SQLite database (DATA/relaybait.db, WAL). Schema versioned by numbered migrations
// applied at open. The write path lives in ingest; this class is what readers use
// (the CLI, later the web API) and what ingest uses underneath.
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

    // Writes (used by ingest in one transaction per batch).
    void begin();
    void commit();
    void rollback();
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

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace relaybait::store
