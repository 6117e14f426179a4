#pragma once
// What a quiet honeypot gives back to the system, much as Postfix's daemons exit after
// max_idle seconds without a client: once no session has been open for a while after some
// traffic, the heap's free pages (malloc_trim), the page cache of the store's writing SQLite
// connection and the resident pages of the code and constants of this program and its
// libraries go back. Code pages stay in the page cache: what runs again is mapped back by a
// minor fault (a few dozen faults of 64 KB for a whole session). At start-up, serve() releases the code pages that only start-up ran (TLS, GMime and SQLite
// initialisation, configuration, rules) the same way.
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

// Drops the resident pages of the read-only file mappings (the code and constants of this
// program and of its shared libraries, read-only data files; the mappings stay) and returns
// how many bytes were resident. Only pages identical to the file's go: a mapping that holds any
// page this process wrote (copy on write: relocations), resident or swapped out, and every
// loaded object's RELRO segment (relocated, then made read-only) are never touched, nor are
// device mappings. 0 when /proc is not available. The files must be replaced by rename, never
// rewritten in place (the kernel refuses that for a running program on local filesystems;
// network filesystems may not; package managers rename): a dropped page is read again from
// the file.
std::size_t release_file_pages();

struct address_range {
    std::uintptr_t begin = 0, end = 0;  // [begin, end)
    std::uint64_t resident_kb = 0;
};
// The part of release_file_pages() that reads /proc/self/smaps (tests feed it text): the
// read-only file mappings without anonymous or swapped pages that overlap none of `keep`.
std::vector<address_range> releasable_mappings(std::istream& smaps, const std::vector<address_range>& keep);

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
