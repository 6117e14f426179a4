#pragma once
// The durable write path, with group commit. Sessions stream message bytes in; a commit is
// acknowledged only once the Maildir file is fsync'd, renamed tmp/ -> new/, the directory
// fsync'd and the database row committed. Commits that arrive together share their fsyncs
// and one database transaction, so throughput grows with load instead of paying one
// fsync per message on the event loop. All disk work runs on the store's own threads;
// every call here returns at once and is safe from any thread.
//
// Contract changes: none removed or changed. Added: ingest_options::{hostname,
// writer_threads, sync}, ingest_stats and ingest::stats(), store/maildir.hpp helpers
// (valid_folder_name for config validation); ingest_options::flush_for_tests and
// ingest::database_synchronous_level() (so tests reach the flush and the synchronous choice);
// DATA/relaybait.unflushed, the rows of failed flushes checked at the next start (below).
//
// The write path, in order, for each message:
//  1. writer thread (per-message order kept like a strand): opens maildir/<folder>/tmp/<name>
//     lazily, writes trace headers then the bytes, feeding SHA-256 and size (message bytes
//     only) and keeping the first 64 KB for header parsing.
//  2. at commit, on that writer thread: headers parsed; with a classifier, it runs on the
//     message bytes (the first 64 KB kept in memory, else one pread of the page-cached tmp
//     file, trace headers skipped) and its folder is created if needed; a drop unlinks the
//     tmp file here (never synced); else fdatasync(file) (sync::per_file).
//  3. group commit in two overlapping stages, per batch (up to max_batch ready commits):
//     a) rename tmp/<name> -> new/<name>,S=<size> (new/ of the classifier's folder, which may
//        differ from the tmp/'s: same filesystem; dropped messages have no file), then ONE
//        SQLite transaction with the waiting session rows, the credential rows and every
//        message row (+ recipients). If a message row fails, the transaction is rolled back
//        and written again with one SAVEPOINT per message, so one bad row fails only its
//        message (savepoints are not paid on the common path: SQLite copies every touched
//        page into a sub-journal for them).
//     b) ONE flush for every batch committed meanwhile, then each done(ok=true): by default
//        syncfs, which makes the file data, the names in new/ and the WAL durable together
//        (the connection runs synchronous=NORMAL: its COMMIT does not fsync; when the
//        database is on another filesystem than the maildir it stays synchronous=FULL); each
//        flusher calls it on its own descriptor of the maildir, open since the start (syncfs
//        reports only the write errors that happened while the descriptor was open);
//        with sync::per_file, the writers fdatasync'd each file, COMMIT fsync'd the WAL, and
//        each destination new/ is fsync'd here.
//     Stage a) of batch N+1 runs while stage b) flushes batch N; a 250 waits for both.
//     Session rows and credentials wait up to side_linger for messages to ride with.
//     WAL checkpoints run on a background connection (synchronous=FULL), not on the commit path.
//     A failure of a message before its COMMIT removes its file and calls done(ok=false);
//     a failed flush answers the batch ok=false but leaves its (complete) rows and files.
//
// Crash safety (kill -9 or power loss at any point): a message is acknowledged (done ok ->
// 250) only after the flush that followed the COMMIT of its row, so both its file in new/
// and its row are durable. At start-up, before any new message:
//  - recover_maildir moves every file left in a tmp/ and every file in a new/ whose path has
//    no messages row to DATA/maildir-recovered/ (a crash between the renames and the COMMIT);
//  - after a crash only (a clean stop leaves DATA/relaybait.clean-stop, removed at start;
//    a stop after a failed flush leaves none), the
//    newest rows (at most four batches can be committed but not flushed; rows of the last
//    minute) are checked against their files in new/ or cur/ (size in the name's S=, SHA-256
//    of the message bytes): a row whose file did not reach the disk whole is removed, its
//    file moved out (a crash between the COMMIT and the flush: never acknowledged, the client
//    saw no 250 and retries). A row whose file is missing (ENOENT), short or not the bytes
//    hashed is removed; one whose file cannot be opened, read or looked for (in new/, cur/
//    or cur/'s listing) for another reason (EACCES, EIO, ELOOP, EMFILE, a directory in its
//    place) is kept, with a warning naming the file;
//  - the rows of batches whose flush failed, whatever their age: a failed flush appends
//    "<row id> <queue id>" lines to DATA/relaybait.unflushed (fdatasync'd, best effort; at most
//    100,000 ids, then a warning), and the next start removes every listed row whose queue id
//    matches, its file moved to DATA/maildir-recovered/: those messages were answered with a
//    temporary failure, and after a failed writeback reading the file back proves nothing (the
//    page cache may hold pages that never reached the disk). Then the list goes.
// After a failed flush nothing more is acknowledged until a restart (every later batch is
// answered with a temporary failure and listed): a later syncfs may return 0 for pages whose
// writeback error was already reported to another flush.
// So "counted" == "acknowledged or complete"; cur/ belongs to Dovecot and is never written.
// A dropped row has no path (NULL in the database) and needs no file.
// One process per data directory: DATA/relaybait.lock is flock'd (a second ingest throws).
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "store/records.hpp"

namespace relaybait::store {

enum class sync_method {
    per_file,  // fdatasync of each file on the writer threads, overlapping the previous batch
    syncfs,    // one syncfs() of the filesystem per batch (flushes everything on that fs)
};

struct ingest_options {
    std::filesystem::path data_dir;  // holds maildir/ and relaybait.db
    std::size_t max_batch = 256;     // messages per group commit
    bool fsync = true;               // false only for tests that measure nothing durable
    std::string hostname;            // host part of Maildir file names; empty = gethostname()
    unsigned writer_threads = 2;     // run append() writes and the per-file fdatasyncs
    sync_method sync = sync_method::syncfs;  // measured faster here (see the report); per_file
                                             // if the filesystem carries other heavy writers
    // Session rows and credentials wait this long for a batch of messages to ride with.
    std::chrono::milliseconds side_linger{20};
    // Tests only (a flush cannot be made to fail otherwise): when set, called instead of the
    // flush after each COMMIT (the syncfs, or the fsyncs of the new/ directories) and answered
    // like it: 0 = flushed, else the errno it failed with. Ignored when fsync is false.
    // It is called from both flusher threads (rb-store-sync), possibly at the same time: it
    // must be thread-safe. Its time is not counted in ingest_stats (file_sync_us, dir_sync_us).
    std::function<int()> flush_for_tests;
};

struct ingest_stats {
    std::uint64_t committed = 0;      // messages acknowledged ok since start
    std::uint64_t failed = 0;         // commits answered ok=false
    std::uint64_t batches = 0;        // group commits that carried at least one message
    std::uint64_t largest_batch = 0;
    std::uint64_t recovered_tmp = 0;      // found in tmp/ at start, moved to maildir-recovered/
    std::uint64_t recovered_orphans = 0;  // found in new/ without a row at start, moved likewise
    std::uint64_t recovered_rows = 0;     // rows without their whole file at start: removed
    // Where the time goes (microseconds, summed): file syncs (per-file fdatasync on the
    // writers, or syncfs on the flushers), renames, new/ directory fsyncs, SQLite transactions.
    std::uint64_t file_sync_us = 0, rename_us = 0, dir_sync_us = 0, db_us = 0;
};

// What the rules decided at DATA end (the store knows nothing of rules: the caller's classifier
// turns the message into this).
struct classification {
    std::string folder;  // Maildir++ folder to file into ("Probes" or ".Probes"); "" = the one given to begin_message
    std::vector<std::string> tags;
    std::string rule;    // the deciding rule's name
    std::string kind;    // its kind
    bool drop = false;   // keep only the database row (dropped = 1, no maildir_path); the file is deleted
    bool relay = false;  // the deciding rule asks for a relay: recorded as the row's relay_requested
};

// Called once per commit on a store writer thread, after the last byte is written and before
// the file is synced: `message` is the message as received (trace headers excluded), at most
// `max_bytes` of it (`truncated` when there was more). It must be thread-safe and bounded; an
// exception is logged and the message is filed as if no rule matched.
struct classifier {
    std::uint64_t max_bytes = 4u << 20;
    std::function<classification(std::string_view message, bool truncated)> classify;
};

struct commit_result {
    bool ok = false;
    std::string error;         // when !ok
    std::int64_t message_id = 0;
    std::string maildir_path;  // relative to data_dir ("" when dropped)
    store::classification classification;  // what the classifier decided (empty without one)
    std::string sha256;        // of the message as received (trace headers excluded)
    std::uint64_t size = 0;    // idem
};

class pending_message;  // one message being received; opaque to the caller

class ingest {
public:
    // Opens/creates maildir and database (migrations), takes the lock, runs the recovery.
    // Throws std::runtime_error / std::system_error.
    explicit ingest(ingest_options options);
    ~ingest();  // drains every pending commit, then stops the threads
    ingest(const ingest&) = delete;
    ingest& operator=(const ingest&) = delete;

    // Starts a message: the first bytes written are `trace_headers` (already CRLF-formatted).
    // `folder` must satisfy valid_folder_name (store/maildir.hpp), else the commit fails.
    std::shared_ptr<pending_message> begin_message(std::string folder, std::string trace_headers);
    // Appends message bytes (as received, unstuffed). Ordered per message.
    void append(const std::shared_ptr<pending_message>& message, std::string bytes);
    // Bytes handed to append() not yet written to the file; a session pauses reading when high.
    std::uint64_t unwritten_bytes(const std::shared_ptr<pending_message>& message) const;
    // Makes the message durable, fills size, sha256, headers, maildir_path, then calls done
    // on a store thread (the caller posts back to its own executor). done must not throw.
    // Empty record.queue_id / received_at are filled in (from the file name / now).
    // A second commit, or a commit after abort, is answered ok=false at once.
    // With a classifier, it runs first (see classifier) and its folder/tags/rule/kind/drop are
    // applied to the file and the row before anything is made durable.
    void commit(const std::shared_ptr<pending_message>& message, message_record record,
                std::function<void(commit_result)> done, classifier classify = {});
    // Drops a message that will not be acknowledged; its tmp file is removed.
    void abort(const std::shared_ptr<pending_message>& message);

    // Session rows and credentials: written with the next batch of messages, or alone after
    // options.side_linger; no acknowledgement needed.
    void record_session(session_record session);  // insert or replace by id
    void record_credential(credential_record credential);

    // Gives the committer's SQLite page cache back (a quiet server, net/idle_memory.hpp).
    void release_memory();

    // Messages committed since start (for stats and tests).
    std::uint64_t committed() const;
    // PRAGMA synchronous of the committing connection (1 NORMAL, 2 FULL; see the write path,
    // 3b): for tests and diagnostics.
    int database_synchronous_level() const;
    ingest_stats stats() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace relaybait::store
