#pragma once
// What a quiet honeypot gives back to the system, much as Postfix's daemons exit after
// max_idle seconds without a client: once no session has been open for a while after some
// traffic, the heap's free pages (malloc_trim), the store's SQLite page cache and the resident
// pages of this program's code and constants go back. Code pages stay in the page cache: what
// runs again is mapped back by a minor fault (a few hundred faults for a whole session). At
// start-up, serve() releases the code pages that only start-up ran (TLS, GMime and SQLite
// initialisation, configuration, rules) the same way.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace relaybait::store {
class ingest;
}

namespace relaybait::net {

class session_registry;

// Unmaps the resident pages of this executable's read-only mappings (code, constants) and
// returns how many bytes were resident. Mappings with private pages (relocated data, written
// since the program was loaded) are never touched: only pages identical to the file's go.
// 0 when /proc is not available.
std::size_t release_code_pages();

// Frees the heap's unused pages of every malloc arena (no-op outside glibc).
void release_free_heap_pages();

// Resident memory of this process: VmRSS in kB (0 when /proc is not available).
std::uint64_t resident_kb();

class idle_memory_release {
public:
    using clock = std::chrono::steady_clock;
    // Releases once the registry has been empty for quiet_for after a session was seen.
    idle_memory_release(const session_registry& registry, store::ingest& ingest, std::chrono::milliseconds quiet_for);

    // One look at the registry; true when it released now (run() calls it every period).
    bool tick(clock::time_point now);
    boost::asio::awaitable<void> run(std::chrono::milliseconds period);
    unsigned releases() const { return releases_; }

private:
    const session_registry& registry_;
    store::ingest& ingest_;
    std::chrono::milliseconds quiet_for_;
    std::uint64_t sessions_seen_;
    clock::time_point quiet_since_;
    bool released_ = true;  // start-up released already; nothing to give back before a session
    unsigned releases_ = 0;
};

}  // namespace relaybait::net
