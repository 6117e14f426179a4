#include "store/ingest.hpp"

#include "events/event_log.hpp"
#include "store/database.hpp"
#include "store/header_parser.hpp"
#include "store/maildir.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

// spdlog when the store is linked with it (spdlog::spdlog defines SPDLOG_COMPILED_LIB); stderr
// otherwise, never a second header-only spdlog with its own registry.
#if defined(SPDLOG_COMPILED_LIB) && __has_include(<spdlog/spdlog.h>)
#include <spdlog/spdlog.h>
#define RELAYBAIT_STORE_SPDLOG 1
#endif

namespace relaybait::store {
namespace fs = std::filesystem;

namespace {
// Bytes a message may queue in memory before a writer starts on its file (see append()).
constexpr std::uint64_t write_behind_bytes = 64 * 1024;

std::string errno_text(const char* what, const fs::path& p) {
    return std::string(what) + " " + p.string() + ": " + std::strerror(errno);
}

void log_warning(const std::string& text) {
#ifdef RELAYBAIT_STORE_SPDLOG
    spdlog::warn("store: {}", text);
#else
    std::fprintf(stderr, "relaybait store: %s\n", text.c_str());
#endif
}

void name_thread(const char* name) { ::pthread_setname_np(::pthread_self(), name); }  // for top/perf

std::string hex(const unsigned char* p, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(n * 2, '0');
    for (std::size_t i = 0; i < n; ++i) out[2 * i] = digits[p[i] >> 4], out[2 * i + 1] = digits[p[i] & 15];
    return out;
}
}  // namespace

class pending_message {
public:
    enum class state { open, committing, aborted };

    pending_message(std::string f, std::string t) : folder(std::move(f)), trace(std::move(t)), target_folder(folder) {}
    ~pending_message() {
        if (fd >= 0) ::close(fd);
        if (owns_file) ::unlink(file_path.c_str());
        EVP_MD_CTX_free(sha);
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
    EVP_MD_CTX* sha = nullptr;
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
    std::unique_ptr<database> db;  // committer thread only (after construction)
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

    // Database stage.
    struct synced_batch {
        std::vector<std::shared_ptr<pending_message>> batch;
        std::vector<char> ok;
        std::vector<session_record> sessions;
        std::vector<credential_record> credentials;
    };
    std::mutex db_mutex;
    std::condition_variable db_wake;
    std::condition_variable db_taken;
    std::deque<synced_batch> synced;
    bool db_stop = false;
    std::thread db_thread;

    mutable std::mutex stats_mutex;
    ingest_stats counters;
    std::atomic<std::uint64_t> committed{0};
    std::atomic<std::uint64_t> file_sync_us{0};

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
        try {
            db = std::make_unique<database>(options.data_dir / "relaybait.db", database::mode::read_write);
            create_maildir_folder(maildir, "");
            const auto report = recover_maildir(options.data_dir, *db);
            counters.recovered_tmp = report.tmp_files;
            counters.recovered_orphans = report.orphans;
        } catch (...) {
            ::close(lock_fd);
            throw;
        }
        ready_folders.insert("");
        for (unsigned i = 0; i < options.writer_threads; ++i)
            writers.emplace_back([this] { name_thread("rb-store-write"), writer_loop(); });
        committer = std::thread([this] { name_thread("rb-store-sync"), committer_loop(); });
        db_thread = std::thread([this] { name_thread("rb-store-db"), db_loop(); });
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
            std::lock_guard lock(db_mutex);
            db_stop = true;
        }
        db_wake.notify_all();
        db_thread.join();
        db.reset();
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
        m.sha = EVP_MD_CTX_new();
        if (!m.sha || EVP_DigestInit_ex(m.sha, EVP_sha256(), nullptr) != 1) {
            fail(m, "SHA-256 unavailable");
            return false;
        }
        return write_all(m, m.trace.data(), m.trace.size());
    }

    void write_chunk(pending_message& m, const std::string& bytes) {
        if (!open_file(m)) return;
        if (!write_all(m, bytes.data(), bytes.size())) return;
        EVP_DigestUpdate(m.sha, bytes.data(), bytes.size());
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
            unsigned char digest[EVP_MAX_MD_SIZE];
            unsigned int len = 0;
            EVP_DigestFinal_ex(m.sha, digest, &len);
            auto& r = m.record;
            r.sha256 = hex(digest, len);
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
            std::string folder = out.folder.front() == '.' ? out.folder : "." + out.folder;
            if (!valid_folder_name(folder)) {
                log_warning("classifier folder \"" + out.folder + "\" (rule \"" + out.rule +
                            "\") is not a valid Maildir++ folder; kept " + (m.folder.empty() ? "the inbox" : m.folder));
                folder.clear();
            } else if (!out.drop) {
                try {
                    ensure_folder(folder);
                } catch (const std::exception& e) {
                    log_warning("cannot create folder " + folder + ": " + e.what() + "; kept " +
                                (m.folder.empty() ? "the inbox" : m.folder));
                    folder.clear();
                }
            }
            if (!folder.empty()) m.target_folder = folder;
            out.folder = std::move(folder);
        }
        auto& r = m.record;
        r.rule = out.rule;
        r.kind = out.kind;
        r.tags = out.tags;
        r.dropped = m.dropped = out.drop;
        m.decided = std::move(out);
    }

    // ---- group commit, two pipelined stages ------------------------------------------
    // Stage 1 (committer thread): takes the ready messages, renames them into new/ and makes
    // data and names durable (one syncfs, or the new/ fsyncs after the writers' fdatasyncs).
    // Stage 2 (database thread): one SQLite transaction for every batch stage 1 has finished,
    // then the callbacks. Stage 1 of batch N+1 overlaps stage 2 of batch N; a message is still
    // acknowledged only after both. Renaming before the sync is safe: a file in new/ without
    // its row is moved out at start-up (recover_maildir), and no row is committed before the
    // sync that made its file and name durable returns.

    void committer_loop() {
        for (;;) {
            synced_batch work;
            {
                std::unique_lock lock(commit_mutex);
                commit_wake.wait(lock, [&] { return committer_stop || !ready.empty() || side_records() > 0; });
                if (committer_stop && ready.empty() && side_records() == 0) return;
                // Session rows and credentials ride with the next batch of messages: a
                // transaction of their own (another fdatasync) for each session was half of the
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
            sync_batch(work);
            {
                // Double buffering: wait for the database stage to take the previous batch, so
                // that messages arriving meanwhile join the next batch instead of a small one.
                std::unique_lock lock(db_mutex);
                db_taken.wait(lock, [&] { return synced.empty(); });
                synced.push_back(std::move(work));
            }
            db_wake.notify_one();
        }
    }

    void sync_batch(synced_batch& work) {
        auto& batch = work.batch;
        auto& ok = work.ok;
        ok.resize(batch.size());
        for (std::size_t i = 0; i < batch.size(); ++i) ok[i] = batch[i]->error.empty();
        if (batch.empty()) return;

        auto t0 = clock::now();
        // Renames into new/.
        std::map<std::string, std::vector<std::size_t>> by_folder;
        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (!ok[i] || batch[i]->dropped) continue;  // a dropped message has no file: its row only
            auto& m = *batch[i];
            const std::string final_name = m.name + ",S=" + std::to_string(m.file_size);
            // Into the new/ of the folder the classifier chose (tmp/ may be another folder's:
            // one filesystem, so the rename is atomic); by_folder has its new/ fsync'd below.
            const std::string& folder = m.target_folder;
            const fs::path dir = folder.empty() ? maildir : maildir / folder;
            fs::path target = dir / "new" / final_name;
            if (::rename(m.file_path.c_str(), target.c_str()) != 0) {
                fail(m, errno_text("rename", m.file_path));
                ok[i] = false;
                continue;
            }
            m.file_path = std::move(target);
            m.record.maildir_path = "maildir/" + (folder.empty() ? std::string() : folder + "/") + "new/" + final_name;
            by_folder[folder].push_back(i);
        }
        const std::uint64_t rename_time = micros(t0);
        t0 = clock::now();
        std::uint64_t dir_time = 0;
        if (options.fsync && options.sync == sync_method::syncfs) {
            // One syncfs makes every file's data and every rename durable.
            const int fd = ::open(maildir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            const bool done_ok = fd >= 0 && ::syncfs(fd) == 0;
            const std::string error = done_ok ? std::string() : errno_text("syncfs", maildir);
            if (fd >= 0) ::close(fd);
            if (!done_ok)
                for (std::size_t i = 0; i < batch.size(); ++i)
                    if (ok[i]) fail(*batch[i], error), ok[i] = false;
            file_sync_us += micros(t0);
        } else if (options.fsync) {
            // The writers fdatasync'd each file; the names need their new/ fsync'd.
            for (const auto& [folder, members] : by_folder) {
                try {
                    fsync_directory((folder.empty() ? maildir : maildir / folder) / "new");
                } catch (const std::exception& e) {
                    for (auto i : members) fail(*batch[i], e.what()), ok[i] = false;
                }
            }
            dir_time = micros(t0);
        }
        std::lock_guard lock(stats_mutex);
        counters.rename_us += rename_time;
        counters.dir_sync_us += dir_time;
    }

    void db_loop() {
        for (;;) {
            std::deque<synced_batch> work;
            {
                std::unique_lock lock(db_mutex);
                db_wake.wait(lock, [&] { return db_stop || !synced.empty(); });
                if (synced.empty()) return;
                work.swap(synced);
            }
            db_taken.notify_all();
            commit_batches(work);
        }
    }

    // One transaction for every batch stage 1 has finished meanwhile.
    void commit_batches(std::deque<synced_batch>& work) {
        std::vector<pending_message*> messages;
        std::vector<commit_result> results;
        std::vector<char> ok;
        for (auto& w : work)
            for (std::size_t i = 0; i < w.batch.size(); ++i) {
                messages.push_back(w.batch[i].get());
                ok.push_back(w.ok[i]);
            }
        results.resize(messages.size());

        const auto t0 = clock::now();
        // First without a savepoint per message: a savepoint makes SQLite copy every page a
        // message touches into its sub-journal before changing it. A message that fails (rare:
        // a constraint on its row) rolls that whole transaction back, and the batch is then
        // written again with one savepoint per message, so that it fails only that message.
        if (!write_transaction(work, messages, results, ok, false)) write_transaction(work, messages, results, ok, true);

        const std::uint64_t db_time = micros(t0);
        std::uint64_t good = 0;
        for (std::size_t i = 0; i < messages.size(); ++i) {
            auto& m = *messages[i];
            results[i].sha256 = m.record.sha256;
            results[i].size = m.record.size;
            results[i].classification = std::move(m.decided);
            if (ok[i]) {
                m.owns_file = false;  // durable and counted: the file now belongs to the Maildir
                results[i].ok = true;
                results[i].maildir_path = m.record.maildir_path;
                ++good;
            } else {
                results[i].error = m.error.empty() ? "commit failed" : m.error;
            }
        }
        committed += good;
        {
            std::lock_guard lock(stats_mutex);
            counters.committed += good;
            counters.failed += messages.size() - good;
            counters.db_us += db_time;
            if (!messages.empty()) {  // one group commit = one transaction
                ++counters.batches;
                counters.largest_batch = std::max<std::uint64_t>(counters.largest_batch, messages.size());
            }
        }
        for (std::size_t i = 0; i < messages.size(); ++i) {
            auto done = std::move(messages[i]->done);
            if (done) done(std::move(results[i]));
        }
    }

    // One transaction for the batches: sessions, messages, credentials. Without savepoints it
    // stops at the first message that fails and returns false with nothing written (the caller
    // retries with savepoints); with them, a failing message is failed alone (ok[i] = false).
    bool write_transaction(std::deque<synced_batch>& work, const std::vector<pending_message*>& messages,
                           std::vector<commit_result>& results, std::vector<char>& ok, bool savepoints) {
        try {
            db->begin();
            for (auto& w : work)
                for (auto& s : w.sessions) {
                    try {
                        db->upsert_session(s);
                    } catch (const std::exception&) {
                        // A bad session row must not cost the batch its messages.
                    }
                }
            for (std::size_t i = 0; i < messages.size(); ++i) {
                if (!ok[i]) continue;
                if (!savepoints) {
                    try {
                        results[i].message_id = db->insert_message(messages[i]->record);
                    } catch (const std::exception&) {
                        db->rollback();
                        return false;
                    }
                    continue;
                }
                results[i].message_id = 0;  // not an id the rolled-back first attempt gave
                try {
                    savepoint(true);
                    results[i].message_id = db->insert_message(messages[i]->record);
                    savepoint(false);
                } catch (const std::exception& e) {
                    rollback_savepoint();
                    fail(*messages[i], e.what());
                    ok[i] = false;
                }
            }
            for (auto& w : work)
                for (auto& c : w.credentials) {
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
            for (std::size_t i = 0; i < messages.size(); ++i)
                if (ok[i]) fail(*messages[i], e.what()), ok[i] = false;
        }
        return true;
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

std::uint64_t ingest::committed() const { return impl_->committed.load(); }

ingest_stats ingest::stats() const {
    std::lock_guard lock(impl_->stats_mutex);
    ingest_stats s = impl_->counters;
    s.file_sync_us = impl_->file_sync_us.load();
    return s;
}

}  // namespace relaybait::store
