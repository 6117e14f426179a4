#include "store/ingest.hpp"

#include "common/background_thread.hpp"

#include "events/event_log.hpp"
#include "store/database.hpp"
#include "store/header_parser.hpp"
#include "store/maildir.hpp"
#include "store/message_admin.hpp"
#include "store/sha256.hpp"
#include "store/store_log.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <cstdio>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace relaybait::store {
namespace fs = std::filesystem;
using detail::log_warning;

namespace {
// Written at a clean stop, removed at start: its absence at start means a crash.
constexpr const char* clean_stop_marker = "relaybait.clean-stop";
// Ids of the message rows of batches whose flush failed, one a line: checked at the next start.
constexpr const char* unflushed_list = "relaybait.unflushed";
constexpr std::uint64_t max_unflushed_ids = 100'000;
// Bytes a message may queue in memory before a writer starts on its file (see append()).
constexpr std::uint64_t write_behind_bytes = 64 * 1024;

std::string errno_text(const char* what, const fs::path& p) {
    return std::string(what) + " " + p.string() + ": " + std::strerror(errno);
}

// A descriptor, closed when its owner goes.
class unique_fd {
public:
    unique_fd() = default;
    explicit unique_fd(int fd) : fd_(fd) {}
    unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& other) noexcept {
        if (this != &other) {
            if (fd_ >= 0) ::close(fd_);
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }

private:
    int fd_ = -1;
};

}  // namespace

class pending_message {
public:
    enum class state { open, committing, aborted };

    pending_message(std::string f, std::string t) : folder(std::move(f)), trace(std::move(t)), target_folder(folder) {}
    ~pending_message() {
        if (fd >= 0) ::close(fd);
        if (owns_file) ::unlink(file_path.c_str());
    }

    const std::string folder;
    const std::string trace;

    // Guarded by mutex.
    std::mutex mutex;
    std::deque<std::string> queue;
    bool scheduled = false;
    bool handed_off = false;
    state st = state::open;
    message_record record;
    std::function<void(commit_result)> done;
    store::classifier classify;  // set by commit, used by the writer that finishes the message

    std::atomic<std::uint64_t> unwritten{0};

    // Owned by whichever store thread holds the message (writer, then committer).
    int fd = -1;
    bool owns_file = false;  // file_path must be removed if the message is not committed
    fs::path file_path;      // tmp/<name>, then new/<name>,S=<size>
    std::string name;        // unique name without ",S="
    std::uint64_t file_size = 0;
    std::uint64_t body_size = 0;
    std::optional<store::sha256> sha;  // of the message bytes (trace headers excluded), from open_file
    std::string head;  // first max_header_capture bytes of the message
    std::string error;
    // What the classifier decided (folder normalised to what was applied, "" = kept).
    std::string target_folder;  // where the file goes: `folder` unless the classifier moved it
    bool dropped = false;       // classified drop: no file, the row only
    store::classification decided;
};

struct ingest::impl {
    ingest_options options;
    fs::path maildir;
    std::string host;
    std::int64_t pid = ::getpid();
    int lock_fd = -1;
    std::unique_ptr<database> db;  // committer thread only (after construction), and release_memory()
    std::atomic<std::uint64_t> sequence{0};

    std::mutex folders_mutex;
    std::set<std::string> ready_folders;

    // Writers.
    std::mutex writer_mutex;
    std::condition_variable writer_wake;
    std::deque<std::shared_ptr<pending_message>> runnable;
    bool writers_stop = false;
    std::vector<std::thread> writers;

    // Committer.
    std::mutex commit_mutex;
    std::condition_variable commit_wake;
    std::deque<std::shared_ptr<pending_message>> ready;
    std::deque<session_record> sessions;
    std::deque<credential_record> credentials;
    std::chrono::steady_clock::time_point side_since;  // when the oldest waiting session/credential was queued
    bool committer_stop = false;
    std::thread committer;
    std::size_t side_records() const { return sessions.size() + credentials.size(); }
    std::size_t side_limit() const { return options.max_batch * 4; }
    // A side record (session row, credential) queued: only the first wakes the committer,
    // which then lingers for messages to ride with; a full side batch goes at once.
    void queue_side_record(auto& queue, auto record) {
        bool wake = false;
        {
            std::lock_guard lock(commit_mutex);
            if (side_records() == 0) side_since = std::chrono::steady_clock::now(), wake = true;
            queue.push_back(std::move(record));
            wake = wake || side_records() == side_limit();
        }
        if (wake) commit_wake.notify_one();
    }

    // Durability stage.
    struct batch_work {
        std::vector<std::shared_ptr<pending_message>> batch;
        std::vector<char> ok;
        std::vector<commit_result> results;
        std::vector<session_record> sessions;
        std::vector<credential_record> credentials;
        std::set<std::string> new_dirs;  // folders whose new/ got a file (per_file: fsync'd)
    };
    std::mutex durable_mutex;
    std::condition_variable durable_wake;
    std::condition_variable durable_taken;
    std::deque<batch_work> committed_batches;
    bool durable_stop = false;
    // Two flushers: a batch committed while a flush runs starts its own at once instead of
    // waiting for that flush to end and then paying a whole one (the kernel merges the
    // overlapping device flushes). Four batches at most are committed but not yet flushed.
    static constexpr unsigned flushers = 2;
    std::vector<std::thread> durable_threads;

    mutable std::mutex stats_mutex;
    ingest_stats counters;
    std::atomic<std::uint64_t> committed{0};
    std::atomic<std::uint64_t> file_sync_us{0};
    std::atomic<bool> flush_failed{false};  // since start: then no clean-stop marker
    // Ids listed in DATA/relaybait.unflushed since start (list_unflushed).
    std::mutex unflushed_mutex;
    std::uint64_t unflushed_listed = 0;  // guarded by unflushed_mutex

    using clock = std::chrono::steady_clock;
    static std::uint64_t micros(clock::time_point since) {
        return static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - since).count());
    }

    explicit impl(ingest_options o) : options(std::move(o)) {
        if (options.max_batch == 0) options.max_batch = 1;
        if (options.writer_threads == 0) options.writer_threads = 1;
        fs::create_directories(options.data_dir);
        maildir = options.data_dir / "maildir";
        std::string h = options.hostname;
        if (h.empty()) {
            char buf[256] = {};
            if (::gethostname(buf, sizeof buf - 1) == 0) h = buf;
        }
        host = maildir_host(h);

        const fs::path lock_path = options.data_dir / "relaybait.lock";
        lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (lock_fd < 0) throw std::runtime_error(errno_text("cannot open", lock_path));
        if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
            ::close(lock_fd);
            throw std::runtime_error(lock_path.string() + ": data directory in use by another relaybait process");
        }
        // Each flusher's own descriptor of the maildir for its syncfs, open before any message
        // is written and for as long as the flusher runs: syncfs reports a write error only to
        // descriptors that were open when it happened (Linux >= 5.8), so a descriptor opened
        // for each flush would miss the errors of the writes that came before it.
        std::vector<unique_fd> flush_dirs;
        try {
            db = std::make_unique<database>(options.data_dir / "relaybait.db", database::mode::read_write);
            create_maildir_folder(maildir, "");
            const auto report = recover_maildir(options.data_dir, *db);
            counters.recovered_tmp = report.tmp_files;
            counters.recovered_orphans = report.orphans;
            // After a clean stop every batch was flushed: only a crash leaves rows to check.
            const fs::path clean_stop = options.data_dir / clean_stop_marker;
            if (fs::exists(clean_stop)) {
                fs::remove(clean_stop);
                fsync_directory(options.data_dir);  // a crash from now on must find it gone
            } else {
                counters.recovered_rows = remove_unacknowledged_rows();
            }
            counters.recovered_rows += check_unflushed_rows();
            // One syncfs after the COMMIT makes the files, their names and the WAL durable
            // together, so the connection skips its own WAL fsync: when the maildir and the
            // database share a filesystem, which is the default layout.
            const bool one_flush = options.fsync && options.sync == sync_method::syncfs &&
                                   same_filesystem(options.data_dir / "relaybait.db", maildir);
            db->sync_each_commit(!one_flush);
            if (options.fsync && options.sync == sync_method::syncfs) {
                flush_dirs.reserve(flushers);
                for (unsigned i = 0; i < flushers; ++i) {
                    const int fd = ::open(maildir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                    if (fd < 0) throw std::runtime_error(errno_text("cannot open", maildir));
                    flush_dirs.emplace_back(fd);
                }
            }
        } catch (...) {
            ::close(lock_fd);
            throw;
        }
        ready_folders.insert("");
        for (unsigned i = 0; i < options.writer_threads; ++i)
            writers.emplace_back([this] { threads::become_background_thread("rb-store-write"), writer_loop(); });
        committer = std::thread([this] { threads::become_background_thread("rb-store-db"), committer_loop(); });
        for (unsigned i = 0; i < flushers; ++i)
            durable_threads.emplace_back([this, dir = i < flush_dirs.size() ? std::move(flush_dirs[i]) : unique_fd()] {
                threads::become_background_thread("rb-store-sync"), durable_loop(dir.get());
            });  // the thread's copy of the lambda, and so `dir`, is destroyed when the thread ends
    }

    ~impl() {
        {
            std::lock_guard lock(writer_mutex);
            writers_stop = true;
        }
        writer_wake.notify_all();
        for (auto& t : writers) t.join();
        {
            std::lock_guard lock(commit_mutex);
            committer_stop = true;
        }
        commit_wake.notify_all();
        committer.join();
        {
            std::lock_guard lock(durable_mutex);
            durable_stop = true;
        }
        durable_wake.notify_all();
        for (auto& t : durable_threads) t.join();
        db.reset();
        // Everything is flushed: the next start need not check the newest rows (not synced:
        // a lost marker only costs that check). Not after a failed flush: rows of that batch
        // may not have reached the disk whole, and the check is what finds them.
        if (!flush_failed) {
            const int marker = ::open((options.data_dir / clean_stop_marker).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
            if (marker >= 0) ::close(marker);
        }
        ::close(lock_fd);
    }

    // ---- writers -------------------------------------------------------------------

    void schedule(std::shared_ptr<pending_message> m) {
        {
            std::lock_guard lock(writer_mutex);
            runnable.push_back(std::move(m));
        }
        writer_wake.notify_one();
    }

    void writer_loop() {
        for (;;) {
            std::shared_ptr<pending_message> m;
            {
                std::unique_lock lock(writer_mutex);
                writer_wake.wait(lock, [&] { return writers_stop || !runnable.empty(); });
                if (runnable.empty()) return;
                m = std::move(runnable.front());
                runnable.pop_front();
            }
            drain(m);
        }
    }

    void fail(pending_message& m, std::string error) {
        if (m.error.empty()) m.error = std::move(error);
        if (m.fd >= 0) ::close(m.fd), m.fd = -1;
        if (m.owns_file) ::unlink(m.file_path.c_str()), m.owns_file = false;
    }

    void ensure_folder(const std::string& folder) {
        std::lock_guard lock(folders_mutex);
        if (ready_folders.count(folder)) return;
        create_maildir_folder(maildir, folder);
        ready_folders.insert(folder);
    }

    bool write_all(pending_message& m, const char* data, std::size_t size) {
        while (size > 0) {
            const ssize_t n = ::write(m.fd, data, size);
            if (n < 0) {
                if (errno == EINTR) continue;
                fail(m, errno_text("write", m.file_path));
                return false;
            }
            data += n, size -= static_cast<std::size_t>(n);
            m.file_size += static_cast<std::size_t>(n);
        }
        return true;
    }

    bool open_file(pending_message& m) {
        if (m.fd >= 0 || !m.error.empty()) return m.error.empty();
        if (!valid_folder_name(m.folder)) {
            m.error = "invalid Maildir++ folder name";
            return false;
        }
        try {
            ensure_folder(m.folder);
        } catch (const std::exception& e) {
            m.error = e.what();
            return false;
        }
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
        m.name = maildir_unique_name(us / 1'000'000, us % 1'000'000, pid, ++sequence, host);
        m.file_path = (m.folder.empty() ? maildir : maildir / m.folder) / "tmp" / m.name;
        // Read-write: a classifier reads the message back at commit (one pread, page cache).
        m.fd = ::open(m.file_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (m.fd < 0) {
            m.error = errno_text("create", m.file_path);
            return false;
        }
        m.owns_file = true;
        try {
            m.sha.emplace();
        } catch (const std::exception& e) {
            fail(m, e.what());
            return false;
        }
        return write_all(m, m.trace.data(), m.trace.size());
    }

    void write_chunk(pending_message& m, const std::string& bytes) {
        if (!open_file(m)) return;
        if (!write_all(m, bytes.data(), bytes.size())) return;
        m.sha->update(bytes);
        m.body_size += bytes.size();
        if (m.head.size() < max_header_capture)
            m.head.append(bytes, 0, std::min(bytes.size(), max_header_capture - m.head.size()));
    }

    void drain(const std::shared_ptr<pending_message>& mp) {
        auto& m = *mp;
        for (;;) {
            std::deque<std::string> chunk;
            pending_message::state action = pending_message::state::open;
            bool dropping = false;
            {
                std::lock_guard lock(m.mutex);
                if (!m.queue.empty()) {
                    chunk.swap(m.queue);
                    dropping = m.st == pending_message::state::aborted;
                } else {
                    m.scheduled = false;
                    if (m.handed_off || m.st == pending_message::state::open) return;
                    m.handed_off = true;
                    action = m.st;
                }
            }
            if (!chunk.empty()) {
                for (const auto& bytes : chunk) {
                    if (m.error.empty() && !dropping) write_chunk(m, bytes);
                    m.unwritten -= bytes.size();
                }
                continue;
            }
            if (action == pending_message::state::aborted) {
                fail(m, "aborted");
                return;
            }
            finish(mp);
            return;
        }
    }

    // On the writer thread: parse, hash, sync, then hand to the group committer.
    void finish(const std::shared_ptr<pending_message>& mp) {
        auto& m = *mp;
        open_file(m);  // a message with no bytes still gets its file
        if (m.error.empty()) {
            try {
                m.record.sha256 = m.sha->hex_digest();
            } catch (const std::exception& e) {
                fail(m, e.what());  // answered ok=false like any failure before the COMMIT
            }
        }
        if (m.error.empty()) {
            auto& r = m.record;
            r.size = m.body_size;
            r.headers = parse_headers(m.head);
            if (m.classify.classify) {
                classify(m);
                m.classify.classify = nullptr;  // release what it captured
            }
            std::string().swap(m.head);
            r.folder = m.target_folder;
            if (r.received_at.empty()) r.received_at = events::iso8601_utc_now();
            if (r.queue_id.empty()) r.queue_id = m.name;
            if (m.dropped) {
                // Only the row is kept: the file goes now, unsynced (nothing of it must survive;
                // should a crash resurrect it in tmp/, recovery moves it out uncounted).
                ::close(m.fd);
                m.fd = -1;
                if (::unlink(m.file_path.c_str()) != 0) log_warning(errno_text("unlink", m.file_path));
                m.owns_file = false;
            } else if (options.fsync && options.sync == sync_method::per_file) {
                const auto t0 = clock::now();
                if (::fdatasync(m.fd) != 0) fail(m, errno_text("fdatasync", m.file_path));
                file_sync_us += micros(t0);
            }
            if (m.fd >= 0 && ::close(m.fd) != 0 && m.error.empty()) fail(m, errno_text("close", m.file_path));
            m.fd = -1;
        }
        {
            std::lock_guard lock(commit_mutex);
            ready.push_back(mp);
        }
        commit_wake.notify_one();
    }

    // ---- classification (writer thread, before the file is synced) --------------------

    // A classifier that throws on every message must not flood the log: the first ten, then
    // one in a thousand, with the running count.
    std::atomic<std::uint64_t> classifier_failures{0};
    void classifier_failed(const pending_message& m, const char* what) {
        const auto n = ++classifier_failures;
        if (n <= 10 || n % 1000 == 0)
            log_warning("classifier failed on " + m.name + ": " + what + "; filed as unclassified (" +
                        std::to_string(n) + " failure" + (n == 1 ? "" : "s") + " so far)");
    }

    void classify(pending_message& m) {
        const classifier& c = m.classify;
        const std::uint64_t want = std::min<std::uint64_t>(m.body_size, c.max_bytes);
        const bool truncated = m.body_size > c.max_bytes;
        std::string_view message;
        std::unique_ptr<char[]> buffer;
        if (m.head.size() >= want) {
            message = std::string_view(m.head).substr(0, want);  // small message: still in memory
        } else {
            buffer = std::make_unique_for_overwrite<char[]>(want);
            std::uint64_t got = 0;
            while (got < want) {
                const ssize_t n = ::pread(m.fd, buffer.get() + got, want - got,
                                          static_cast<off_t>(m.trace.size() + got));
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) {
                    log_warning((n < 0 ? errno_text("pread", m.file_path) : "short read of " + m.file_path.string()) +
                                "; message not classified");
                    return;
                }
                got += static_cast<std::uint64_t>(n);
            }
            message = std::string_view(buffer.get(), want);
        }
        classification out;
        try {
            out = c.classify(message, truncated);
        } catch (const std::exception& e) {
            classifier_failed(m, e.what());
            return;
        } catch (...) {
            classifier_failed(m, "unknown exception");
            return;
        }
        if (!out.folder.empty()) {
            // "INBOX" (any case) is the inbox, "Name" and ".Name" the folder ".Name".
            auto folder = maildir_folder_for(out.folder);
            const std::string kept = m.folder.empty() ? "the inbox" : m.folder;
            if (!folder) {
                log_warning("classifier folder \"" + out.folder + "\" (rule \"" + out.rule +
                            "\") is not a valid Maildir++ folder; kept " + kept);
            } else if (!out.drop && !folder->empty()) {
                try {
                    ensure_folder(*folder);
                } catch (const std::exception& e) {
                    log_warning("cannot create folder " + *folder + ": " + e.what() + "; kept " + kept);
                    folder.reset();
                }
            }
            if (folder) m.target_folder = *folder;
            out.folder = folder.value_or(std::string());
        }
        auto& r = m.record;
        r.rule = out.rule;
        r.kind = out.kind;
        r.relay_requested = out.relay;
        r.tags = out.tags;
        r.dropped = m.dropped = out.drop;
        m.decided = std::move(out);
    }

    // ---- group commit, two pipelined stages ------------------------------------------
    // Stage 1 (rb-store-db): takes the ready messages, renames them into new/ and writes one
    // SQLite transaction for the batch (with the waiting session rows and credentials).
    // Stage 2 (rb-store-sync, two threads): ONE flush for every batch stage 1 has committed
    // meanwhile (syncfs: file data, names and WAL together), then the callbacks. Stage 1 of
    // batch N+1 overlaps stage 2 of batch N; a message is acknowledged only after a flush that
    // began after its COMMIT. A crash before that flush can leave a row whose file is not
    // complete on disk: such a message was never acknowledged, and start-up removes the row
    // (remove_unacknowledged_rows); at most the 2 + flushers newest batches can be in that state.

    void committer_loop() {
        for (;;) {
            batch_work work;
            {
                std::unique_lock lock(commit_mutex);
                commit_wake.wait(lock, [&] { return committer_stop || !ready.empty() || side_records() > 0; });
                if (committer_stop && ready.empty() && side_records() == 0) return;
                // Session rows and credentials ride with the next batch of messages: a
                // transaction of their own (another flush) for each session was half of the
                // commits under load. Alone, they wait at most side_linger.
                if (ready.empty() && !committer_stop)
                    commit_wake.wait_until(lock, side_since + options.side_linger, [&] {
                        return committer_stop || !ready.empty() || side_records() >= side_limit();
                    });
                while (!ready.empty() && work.batch.size() < options.max_batch) {
                    work.batch.push_back(std::move(ready.front()));
                    ready.pop_front();
                }
                while (!sessions.empty() && work.sessions.size() < side_limit()) {
                    work.sessions.push_back(std::move(sessions.front()));
                    sessions.pop_front();
                }
                while (!credentials.empty() && work.credentials.size() < side_limit()) {
                    work.credentials.push_back(std::move(credentials.front()));
                    credentials.pop_front();
                }
            }
            rename_batch(work);
            const auto t0 = clock::now();
            // First without a savepoint per message: a savepoint makes SQLite copy every page a
            // message touches into its sub-journal before changing it. A message that fails
            // (rare: a constraint on its row) rolls that whole transaction back, and the batch
            // is then written again with one savepoint per message, failing only that message.
            if (!write_transaction(work, false)) write_transaction(work, true);
            const std::uint64_t db_time = micros(t0);
            {
                std::lock_guard lock(stats_mutex);
                counters.db_us += db_time;
            }
            {
                // Wait for a flusher to take the previous batch, so that messages arriving
                // meanwhile join the next batch (and at most 2 + flushers batches are ever
                // committed but not yet flushed).
                std::unique_lock lock(durable_mutex);
                durable_taken.wait(lock, [&] { return committed_batches.empty(); });
                committed_batches.push_back(std::move(work));
            }
            durable_wake.notify_one();
        }
    }

    // Into the new/ of the folder the classifier chose (tmp/ may be another folder's: one
    // filesystem, so the rename is atomic). Dropped messages have no file: their row only.
    void rename_batch(batch_work& work) {
        auto& batch = work.batch;
        work.ok.resize(batch.size());
        work.results.resize(batch.size());
        const auto t0 = clock::now();
        for (std::size_t i = 0; i < batch.size(); ++i) {
            auto& m = *batch[i];
            work.ok[i] = m.error.empty();
            if (!work.ok[i] || m.dropped) continue;
            const std::string final_name = m.name + ",S=" + std::to_string(m.file_size);
            const std::string& folder = m.target_folder;
            fs::path target = (folder.empty() ? maildir : maildir / folder) / "new" / final_name;
            if (::rename(m.file_path.c_str(), target.c_str()) != 0) {
                fail(m, errno_text("rename", m.file_path));
                work.ok[i] = false;
                continue;
            }
            m.file_path = std::move(target);
            m.record.maildir_path = "maildir/" + (folder.empty() ? std::string() : folder + "/") + "new/" + final_name;
            work.new_dirs.insert(folder);
        }
        std::lock_guard lock(stats_mutex);
        counters.rename_us += micros(t0);
    }

    // maildir_fd: this flusher's own descriptor of the maildir (syncfs), -1 when not used.
    void durable_loop(int maildir_fd) {
        for (;;) {
            std::deque<batch_work> work;
            {
                std::unique_lock lock(durable_mutex);
                durable_wake.wait(lock, [&] { return durable_stop || !committed_batches.empty(); });
                if (committed_batches.empty()) return;
                work.swap(committed_batches);
            }
            durable_taken.notify_all();
            const std::string error = make_durable(work, maildir_fd);
            if (!error.empty()) list_unflushed(work);
            for (auto& w : work) acknowledge(w, error);
        }
    }

    // Returns "" or what failed. syncfs: one flush for the files, their names and the WAL.
    // per_file: the writers fdatasync'd the files and COMMIT fsync'd the WAL; the names need
    // their new/ directories fsync'd.
    std::string make_durable(std::deque<batch_work>& work, int maildir_fd) {
        if (!options.fsync) return {};
        // After a failed writeback the page cache no longer tells what is on the disk, and a
        // later syncfs can return 0 for pages whose error was already reported to another
        // flush: nothing more is acknowledged until a restart (PostgreSQL's answer to the
        // same Linux behaviour).
        if (flush_failed) return "an earlier flush failed: nothing is acknowledged until relaybait restarts";
        const auto t0 = clock::now();
        std::string error;
        if (options.flush_for_tests) {
            if (const int failed = options.flush_for_tests(); failed != 0)
                error = "flush of " + maildir.string() + ": " + std::strerror(failed);
        } else if (options.sync == sync_method::syncfs) {
            if (::syncfs(maildir_fd) != 0) error = errno_text("syncfs", maildir);
            file_sync_us += micros(t0);
        } else {
            std::set<std::string> dirs;
            for (const auto& w : work) dirs.insert(w.new_dirs.begin(), w.new_dirs.end());
            for (const auto& folder : dirs) {
                try {
                    fsync_directory((folder.empty() ? maildir : maildir / folder) / "new");
                } catch (const std::exception& e) {
                    error = e.what();
                }
            }
            std::lock_guard lock(stats_mutex);
            counters.dir_sync_us += micros(t0);
        }
        if (!error.empty()) {
            log_warning(error + ": the batch is answered with a temporary failure, and every later one too "
                                "until relaybait restarts");
            flush_failed = true;
        }
        return error;
    }

    // After a failed flush the kernel may have dropped the data of those batches' files, and
    // the start-up check after a crash looks only at the newest rows: their ids are appended to
    // DATA/relaybait.unflushed, which the next start checks in full (check_unflushed_rows).
    // Best effort (the filesystem just failed a flush), and bounded: past max_unflushed_ids
    // ids no more are listed. Every start reads the list and removes it before any message
    // (check_unflushed_rows, which fails the start when it cannot), so the count kept by this
    // process is the file's.
    void list_unflushed(const std::deque<batch_work>& work) {
        std::lock_guard lock(unflushed_mutex);
        std::string lines;
        std::uint64_t listed = 0;
        bool full = false;
        for (const auto& w : work)
            for (std::size_t i = 0; i < w.batch.size() && !full; ++i) {
                if (!w.ok[i] || w.batch[i]->dropped || w.results[i].message_id == 0) continue;  // no row, or no file
                full = unflushed_listed + listed == max_unflushed_ids;
                if (!full) lines += std::to_string(w.results[i].message_id) + " " + w.batch[i]->record.queue_id + "\n", ++listed;
            }
        const fs::path path = options.data_dir / unflushed_list;
        if (full)
            log_warning(path.string() + " lists " + std::to_string(max_unflushed_ids) +
                        " ids: the rows of further failed flushes are not listed (the next start checks only the newest rows for them)");
        if (lines.empty()) return;
        const unique_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
        if (fd.get() < 0) {
            log_warning(errno_text("cannot open", path) + ": the rows of the failed flush are not listed");
            return;
        }
        const off_t size_before = ::lseek(fd.get(), 0, SEEK_END);
        for (std::size_t done = 0; done < lines.size();) {
            const ssize_t n = ::write(fd.get(), lines.data() + done, lines.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                log_warning(errno_text("write", path) + ": the rows of the failed flush are not listed");
                // No torn line for the next append to continue (the start-up reads whole lines only).
                if (size_before >= 0 && ::ftruncate(fd.get(), size_before) != 0) log_warning(errno_text("ftruncate", path));
                return;
            }
            done += static_cast<std::size_t>(n);
        }
        if (::fdatasync(fd.get()) != 0) log_warning(errno_text("fdatasync", path));
        if (unflushed_listed == 0) {  // its name too, once
            try {
                fsync_directory(options.data_dir);
            } catch (const std::exception& e) {
                log_warning(e.what());
            }
        }
        unflushed_listed += listed;
    }

    // The callbacks of one committed batch, after the flush. When the flush failed, the
    // messages are answered as failed but their rows and files stay (complete, only their
    // durability is unknown): the client retries, at worst a duplicate is kept.
    void acknowledge(batch_work& w, const std::string& flush_error) {
        std::uint64_t good = 0;
        for (std::size_t i = 0; i < w.batch.size(); ++i) {
            auto& m = *w.batch[i];
            auto& result = w.results[i];
            result.sha256 = m.record.sha256;
            result.size = m.record.size;
            result.classification = std::move(m.decided);
            if (w.ok[i]) m.owns_file = false;  // committed: the file belongs to the Maildir now
            if (w.ok[i] && flush_error.empty()) {
                result.ok = true;
                result.maildir_path = m.record.maildir_path;
                ++good;
            } else {
                result.ok = false;
                result.error = !w.ok[i] ? (m.error.empty() ? "commit failed" : m.error) : flush_error;
            }
        }
        committed += good;
        {
            std::lock_guard lock(stats_mutex);
            counters.committed += good;
            counters.failed += w.batch.size() - good;
            if (!w.batch.empty()) {  // one group commit = one transaction
                ++counters.batches;
                counters.largest_batch = std::max<std::uint64_t>(counters.largest_batch, w.batch.size());
            }
        }
        for (std::size_t i = 0; i < w.batch.size(); ++i) {
            auto done = std::move(w.batch[i]->done);
            if (done) done(std::move(w.results[i]));
        }
    }

    // One transaction for the batch: sessions, messages, credentials. Without savepoints it
    // stops at the first message that fails and returns false with nothing written (the caller
    // retries with savepoints); with them, a failing message is failed alone (ok[i] = false).
    bool write_transaction(batch_work& work, bool savepoints) {
        auto& ok = work.ok;
        try {
            db->begin();
            for (auto& s : work.sessions) {
                try {
                    db->upsert_session(s);
                } catch (const std::exception&) {
                    // A bad session row must not cost the batch its messages.
                }
            }
            for (std::size_t i = 0; i < work.batch.size(); ++i) {
                if (!ok[i]) continue;
                auto& m = *work.batch[i];
                if (!savepoints) {
                    try {
                        work.results[i].message_id = db->insert_message(m.record);
                    } catch (const std::exception&) {
                        db->rollback();
                        return false;
                    }
                    continue;
                }
                work.results[i].message_id = 0;  // not an id the rolled-back first attempt gave
                try {
                    savepoint(true);
                    work.results[i].message_id = db->insert_message(m.record);
                    savepoint(false);
                } catch (const std::exception& e) {
                    rollback_savepoint();
                    fail(m, e.what());
                    ok[i] = false;
                }
            }
            for (auto& c : work.credentials) {
                try {
                    db->insert_credential(c);
                } catch (const std::exception&) {
                }
            }
            db->commit();
        } catch (const std::exception& e) {
            try {
                db->rollback();
            } catch (const std::exception&) {
            }
            for (std::size_t i = 0; i < work.batch.size(); ++i)
                if (ok[i]) fail(*work.batch[i], e.what()), ok[i] = false;
        }
        return true;
    }

    // ---- start-up after a crash: rows of messages that were never acknowledged ----------
    // A crash between a batch's COMMIT and its flush can leave rows whose files did not
    // reach the disk whole (missing, short, or not the bytes hashed). Only the newest rows can
    // be in that state: at most 2 + flushers batches (one per flusher, one queued, one just
    // committed), all committed within moments of the newest row. Each row of the last minute
    // before the newest, within that count, is checked against its file (in new/ or, moved by
    // Dovecot, in cur/): size from the name's S=, SHA-256 of the bytes after the trace headers.
    // A row that does not match is removed and its file moved to DATA/maildir-recovered/:
    // never acknowledged, not counted. (A message expunged over IMAP in that last minute before
    // a crash looks the same and loses its row too.) A file that cannot be looked at (an error
    // other than "no such file" when opening or reading it or looking for it in new/, cur/ or
    // cur/'s listing: permissions, EIO, a symlink loop, no descriptor left) proves nothing: its
    // row is kept, with a warning.
    std::uint64_t remove_unacknowledged_rows() {
        std::uint64_t removed = 0;
        const auto rows = db->list_messages({.limit = (2 + flushers) * options.max_batch});
        if (rows.empty()) return 0;
        const auto newest = unix_seconds(rows.front().received_at);
        for (const auto& row : rows) {
            if (newest - unix_seconds(row.received_at) > 60) break;  // newest first: older rows were flushed
            removed += remove_if_not_whole(row);
        }
        return removed;
    }

    // At start, when DATA/relaybait.unflushed exists (list_unflushed): every row it lists goes,
    // its file moved to DATA/maildir-recovered/ like the crash check's. Those messages were
    // answered with a temporary failure (the client retries), and whether their bytes reached
    // the disk cannot be told: the page cache may still hold pages whose writeback failed, so
    // reading the file back proves nothing. A line is "<row id> <queue id>\n": only whole lines
    // whose queue id matches the row count (a torn line, or an id SQLite gave again to a later
    // message, never removes another row). Then the list goes (the deletions are committed by
    // then: autocommit, synchronous=FULL until the threads start).
    std::uint64_t check_unflushed_rows() {
        const fs::path path = options.data_dir / unflushed_list;
        std::error_code ec;
        if (!fs::exists(path, ec)) return 0;
        std::string text;
        if (!read_whole_file(path, text))
            throw std::runtime_error(errno_text("cannot read", path) + " (the rows of earlier failed flushes)");
        std::uint64_t removed = 0;
        for (std::size_t at = 0, end; (end = text.find('\n', at)) != std::string::npos; at = end + 1) {
            const std::string_view line(text.data() + at, end - at);
            const auto space = line.find(' ');
            std::int64_t id = 0;
            if (space == std::string_view::npos) continue;
            const auto [stop, failed] = std::from_chars(line.data(), line.data() + space, id);
            if (failed != std::errc() || stop != line.data() + space) continue;
            const auto row = db->find_message(id);
            if (!row || row->queue_id != line.substr(space + 1)) continue;
            removed += remove_row(*row, "its flush failed: never acknowledged", false);
        }
        if (::unlink(path.c_str()) != 0) throw std::runtime_error(errno_text("cannot remove", path));
        fsync_directory(options.data_dir);
        return removed;
    }

    static bool read_whole_file(const fs::path& path, std::string& text) {
        const unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (fd.get() < 0) return false;
        char buffer[64 * 1024];
        for (;;) {
            const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return false;
            if (n == 0) return true;
            text.append(buffer, static_cast<std::size_t>(n));
        }
    }

    // The check of one row (of a dropped message: none): 1 when it was removed, its file (what
    // is left of it) moved to DATA/maildir-recovered/.
    std::uint64_t remove_if_not_whole(const message_record& row) {
        if (row.maildir_path.empty()) return 0;  // dropped: no file
        const fs::path recorded = options.data_dir / row.maildir_path;
        std::error_code lookup_error;
        const auto file = locate_message_file(options.data_dir, row, lookup_error);
        const file_check check = file           ? check_whole(*file, row)
                                 : lookup_error ? file_check{file_check::unreadable, lookup_error.value()}
                                                : check_not_found(recorded);
        if (check.verdict == file_check::whole) return 0;
        if (check.verdict == file_check::unreadable) {
            log_warning("row " + std::to_string(row.id) + " (" + row.queue_id + ") kept: " +
                        (file || !lookup_error ? "cannot check its file " : "cannot look for its file (in new/ and cur/) ") +
                        (file ? *file : recorded).string() + ": " + std::strerror(check.error));
            return 0;
        }
        return remove_row(row, "no whole file at " + row.maildir_path + " (a crash before its flush: never acknowledged)", true);
    }

    // Removes a row (never acknowledged) and moves what is left of its file, if any, to
    // DATA/maildir-recovered/; 1 when removed. When the file cannot be moved: with
    // keep_row_with_its_file the row stays (its file stays in view); otherwise the row goes
    // anyway and the next start's recover_maildir moves the file, then without a row.
    std::uint64_t remove_row(const message_record& row, const std::string& why, bool keep_row_with_its_file) {
        const auto file = row.maildir_path.empty() ? std::nullopt : locate_message_file(options.data_dir, row);
        if (file) {
            // Labelled like recover_maildir's: folder, new/ or cur/, name.
            const std::string label = (row.folder.empty() ? std::string("INBOX") : row.folder.substr(1)) + "_" +
                                      file->parent_path().filename().string() + "_" + file->filename().string();
            try {
                move_to_recovered(options.data_dir, *file, label);
                fsync_directory(file->parent_path());
                fsync_directory(options.data_dir / "maildir-recovered");
            } catch (const std::exception& e) {
                log_warning("row " + std::to_string(row.id) + " (" + row.queue_id + "): " + why + ": its file cannot be moved: " +
                            e.what());
                if (keep_row_with_its_file) return 0;
            }
        }
        log_warning("row " + std::to_string(row.id) + " (" + row.queue_id + "): " + why + ": removed");
        db->delete_message(row.id);
        return 1;
    }

    // "2026-11-23T18:07:03.123456Z" -> seconds since the epoch (0 when unreadable).
    static std::int64_t unix_seconds(const std::string& iso8601) {
        std::tm tm{};
        if (std::sscanf(iso8601.c_str(), "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                        &tm.tm_min, &tm.tm_sec) != 6)
            return 0;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        return static_cast<std::int64_t>(::timegm(&tm));
    }

    // What the start-up check learnt of a row's file.
    struct file_check {
        enum { whole, not_whole, unreadable } verdict;
        int error = 0;  // errno, when unreadable
    };

    // locate_message_file found no regular file for the row, and every place it looked at
    // (new/, cur/ and its listing) answered "no such file". Gone (not whole) unless something
    // else than a regular file sits at the recorded name: that says nothing about the message.
    static file_check check_not_found(const fs::path& recorded) {
        struct stat st {};
        if (::stat(recorded.c_str(), &st) == 0) return {file_check::unreadable, S_ISDIR(st.st_mode) ? EISDIR : EINVAL};
        if (errno != ENOENT && errno != ENOTDIR) return {file_check::unreadable, errno};
        return {file_check::not_whole};
    }

    // Whole: the file's size is the S= of its name, and the SHA-256 of its last row.size bytes
    // (the message after the trace headers) is the row's. Missing, short or other bytes: not
    // whole; any other failure to open or read it: unreadable.
    static file_check check_whole(const fs::path& file, const message_record& row) {
        const std::string name = file.filename().string();
        const auto s_at = name.rfind(",S=");
        if (s_at == std::string::npos) return {file_check::not_whole};
        std::uint64_t named_size = 0;
        try {
            named_size = std::stoull(name.substr(s_at + 3));
        } catch (const std::exception&) {
            return {file_check::not_whole};
        }
        // Allocated before the open, and the descriptor owned: a throw leaves none open.
        std::vector<char> buffer(64 * 1024);
        store::sha256 hash;
        const unique_fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
        if (fd.get() < 0) return errno == ENOENT ? file_check{file_check::not_whole} : file_check{file_check::unreadable, errno};
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) return {file_check::unreadable, errno};
        if (!S_ISREG(st.st_mode)) return {file_check::unreadable, S_ISDIR(st.st_mode) ? EISDIR : EINVAL};
        if (static_cast<std::uint64_t>(st.st_size) != named_size || named_size < row.size) return {file_check::not_whole};
        auto at = static_cast<off_t>(named_size - row.size);
        for (;;) {
            const ssize_t n = ::pread(fd.get(), buffer.data(), buffer.size(), at);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return {file_check::unreadable, errno};
            if (n == 0) break;
            hash.update(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
            at += n;
        }
        if (static_cast<std::uint64_t>(at) != named_size) return {file_check::not_whole};  // shrank meanwhile
        return {hash.hex_digest() == row.sha256 ? file_check::whole : file_check::not_whole};
    }

    static bool same_filesystem(const fs::path& a, const fs::path& b) {
        struct stat sa {}, sb {};
        const fs::path dir_a = a.has_parent_path() ? a.parent_path() : fs::path(".");
        return ::stat(dir_a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev;
    }

    void savepoint(bool open) { open ? db->savepoint() : db->release_savepoint(); }
    void rollback_savepoint() {
        try {
            db->rollback_to_savepoint();
        } catch (const std::exception&) {
            // The transaction itself failed; the COMMIT below reports it for the whole batch.
        }
    }
};

ingest::ingest(ingest_options options) : impl_(std::make_unique<impl>(std::move(options))) {}
ingest::~ingest() = default;

std::shared_ptr<pending_message> ingest::begin_message(std::string folder, std::string trace_headers) {
    return std::make_shared<pending_message>(std::move(folder), std::move(trace_headers));
}

void ingest::append(const std::shared_ptr<pending_message>& m, std::string bytes) {
    if (!m || bytes.empty()) return;
    bool schedule = false;
    {
        std::lock_guard lock(m->mutex);
        if (m->st != pending_message::state::open) return;
        m->unwritten += bytes.size();
        m->queue.push_back(std::move(bytes));
        // Write-behind: a small message is written in one go at commit (one writer wake-up per
        // message instead of one per read); a large one streams once this much is queued.
        if (!m->scheduled && m->unwritten >= write_behind_bytes) schedule = m->scheduled = true;
    }
    if (schedule) impl_->schedule(m);
}

std::uint64_t ingest::unwritten_bytes(const std::shared_ptr<pending_message>& m) const {
    return m ? m->unwritten.load() : 0;
}

void ingest::commit(const std::shared_ptr<pending_message>& m, message_record record,
                    std::function<void(commit_result)> done, classifier classify) {
    if (!m) {
        if (done) done(commit_result{.ok = false, .error = "no message"});
        return;
    }
    bool schedule = false;
    {
        std::unique_lock lock(m->mutex);
        if (m->st != pending_message::state::open) {
            lock.unlock();
            if (done) done(commit_result{.ok = false, .error = "message already committed or aborted"});
            return;
        }
        m->st = pending_message::state::committing;
        m->record = std::move(record);
        m->done = std::move(done);
        m->classify = std::move(classify);
        if (!m->scheduled) schedule = m->scheduled = true;
    }
    if (schedule) impl_->schedule(m);
}

void ingest::abort(const std::shared_ptr<pending_message>& m) {
    if (!m) return;
    bool schedule = false;
    {
        std::lock_guard lock(m->mutex);
        if (m->st != pending_message::state::open) return;
        m->st = pending_message::state::aborted;
        if (!m->scheduled) schedule = m->scheduled = true;
    }
    if (schedule) impl_->schedule(m);
}

void ingest::record_session(session_record session) { impl_->queue_side_record(impl_->sessions, std::move(session)); }

void ingest::record_credential(credential_record credential) {
    impl_->queue_side_record(impl_->credentials, std::move(credential));
}

void ingest::release_memory() {
    if (impl_->db) impl_->db->release_memory();  // the database's own lock orders it with the committer
}

std::uint64_t ingest::committed() const { return impl_->committed.load(); }

int ingest::database_synchronous_level() const { return impl_->db->synchronous_level(); }

ingest_stats ingest::stats() const {
    std::lock_guard lock(impl_->stats_mutex);
    ingest_stats s = impl_->counters;
    s.file_sync_us = impl_->file_sync_us.load();
    return s;
}

}  // namespace relaybait::store
