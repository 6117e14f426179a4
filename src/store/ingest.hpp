#pragma once
// The durable write path, with group commit. Sessions stream message bytes in; a commit is
// acknowledged only once the Maildir file is fsync'd, renamed tmp/ -> new/, the directory
// fsync'd and the database row committed. Commits that arrive together share their fsyncs
// and one database transaction, so throughput grows with load instead of paying one
// fsync per message on the event loop. All disk work runs on the store's own threads;
// every call here returns at once and is safe from any thread.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "store/records.hpp"

namespace relaybait::store {

struct ingest_options {
    std::filesystem::path data_dir;  // holds maildir/ and relaybait.db
    std::size_t max_batch = 256;     // messages per group commit
    bool fsync = true;               // false only for tests that measure nothing durable
};

struct commit_result {
    bool ok = false;
    std::string error;         // when !ok
    std::int64_t message_id = 0;
    std::string maildir_path;  // relative to data_dir
};

class pending_message;  // one message being received; opaque to the caller

class ingest {
public:
    explicit ingest(ingest_options options);  // opens/creates maildir and database (migrations)
    ~ingest();  // drains every pending commit, then stops the threads
    ingest(const ingest&) = delete;
    ingest& operator=(const ingest&) = delete;

    // Starts a message: the first bytes written are `trace_headers` (already CRLF-formatted).
    std::shared_ptr<pending_message> begin_message(std::string folder, std::string trace_headers);
    // Appends message bytes (as received, unstuffed). Ordered per message.
    void append(const std::shared_ptr<pending_message>& message, std::string bytes);
    // Bytes handed to append() not yet written to the file; a session pauses reading when high.
    std::uint64_t unwritten_bytes(const std::shared_ptr<pending_message>& message) const;
    // Makes the message durable, fills size, sha256, headers, maildir_path, then calls done
    // on a store thread (the caller posts back to its own executor).
    void commit(const std::shared_ptr<pending_message>& message, message_record record,
                std::function<void(commit_result)> done);
    // Drops a message that will not be acknowledged; its tmp file is removed.
    void abort(const std::shared_ptr<pending_message>& message);

    // Session rows and credentials: written in the next batch; no acknowledgement needed.
    void record_session(session_record session);  // insert or replace by id
    void record_credential(credential_record credential);

    // Messages committed since start (for stats and tests).
    std::uint64_t committed() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace relaybait::store
