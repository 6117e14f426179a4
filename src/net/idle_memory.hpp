#pragma once
// What a quiet honeypot gives back to the system, much as Postfix's daemons exit after
// max_idle seconds without a client: once no session has been open for a while after some
// traffic, the heap's free pages (malloc_trim), the page cache of the store's writing SQLite
// connection and the resident pages of the code and constants of this program and of the
// libraries it was started with go back. Code pages stay in the page cache: what runs again is
// mapped back by a minor fault (64 KB at a time). At start-up, serve() releases the code pages
// that only start-up ran (TLS, GMime and SQLite initialisation, configuration, rules) the same
// way.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <istream>
#include <string>
#include <vector>

namespace relaybait::store {
class ingest;
}

namespace relaybait::net {

class session_registry;

// Drops the resident pages of the code and constants of the objects loaded with the program
// (the executable and the shared libraries it was started with: glibc never unloads those;
// their non-writable PT_LOAD segments, recorded before main) and returns how many bytes were
// resident. Never a library loaded later with dlopen (glibc's gconv modules, NSS modules: one
// could be unloaded and its addresses reused between reading /proc/self/smaps and the
// madvise), never a writable segment or RELRO (relocated data), and never a segment whose
// mapping holds a page this process wrote (text relocations), resident or swapped out: only
// pages identical to the file's go. 0 when /proc is not available. A dropped page is read again
// from the file: the binary and libraries must be replaced by rename (as package managers do),
// never rewritten in place.
std::size_t release_file_pages();

struct address_range {
    std::uintptr_t begin = 0, end = 0;  // [begin, end)
    std::uint64_t resident_kb = 0;
};
// The part of release_file_pages() that reads /proc/self/smaps (tests feed it text): the
// `segments` every mapping of which is a read-only file mapping without anonymous or swapped
// pages; resident_kb is the Rss of those mappings.
std::vector<address_range> releasable_segments(std::istream& smaps, const std::vector<address_range>& segments);
// The non-writable PT_LOAD segments of the objects loaded with the program (page-aligned).
const std::vector<address_range>& code_segments_loaded_at_start();

// Frees the heap's unused pages of every malloc arena (no-op outside glibc).
void release_free_heap_pages();
// Both of the above (start-up's end, a quiet spell); returns release_file_pages()'s bytes.
std::size_t release_unused_pages();

// Resident memory of this process: VmRSS in kB (0 when /proc is not available).
std::uint64_t resident_kb();

class idle_memory_release {
public:
    using clock = std::chrono::steady_clock;
    // Due once the registry has been empty for quiet_for after a session was seen.
    idle_memory_release(const session_registry& registry, store::ingest& ingest, std::chrono::milliseconds quiet_for);

    // One look at the registry (io thread; the registry's sweeper calls it): true, once per
    // quiet spell, when release() is due.
    bool due(clock::time_point now);
    // The release itself: milliseconds of malloc_trim, /proc reading and waiting for a commit in
    // progress, so serve() runs it on a background thread, never on the io thread.
    void release();
    unsigned releases() const { return releases_; }  // times due() said so

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
