#include "net/idle_memory.hpp"

#include <spdlog/spdlog.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "net/session_registry.hpp"
#include "store/ingest.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace relaybait::net {

namespace {

// "55d0c0a00000-55d0c0b00000 r-xp 00001000 fd:01 1234   /path" -> its range, and whether it
// maps a file (a path; not [heap], [vdso], nor a device) without write permission.
bool parse_mapping_header(const std::string& line, address_range& range, bool& read_only_file) {
    const auto dash = line.find('-');
    const auto space = line.find(' ');
    if (dash == std::string::npos || space == std::string::npos || dash > space) return false;
    try {
        range = address_range{std::stoull(line.substr(0, dash), nullptr, 16),
                              std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16), 0};
    } catch (const std::exception&) {
        return false;
    }
    const std::string perms = line.substr(space + 1, 4);
    const auto path_at = line.find('/');
    const bool file = path_at != std::string::npos && line.compare(path_at, 5, "/dev/") != 0;
    read_only_file = file && perms.size() == 4 && perms[0] == 'r' && perms[1] == '-';
    return true;
}

bool is_field(const std::string& line, std::string_view name) {
    return line.size() > name.size() && line.compare(0, name.size(), name) == 0 && line[name.size()] == ':';
}

std::uint64_t field_kb(const std::string& line) {
    try {
        return std::stoull(line.substr(line.find(':') + 1));
    } catch (const std::exception&) {
        return 0;
    }
}

// Every loaded object's PT_GNU_RELRO segment: relocated at start, then made read-only. Its
// written pages are anonymous, but only while resident: swapped out they count under Swap.
std::vector<address_range> relro_segments() {
    std::vector<address_range> relro;
    ::dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* out) {
            for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
                const auto& ph = info->dlpi_phdr[i];
                if (ph.p_type != PT_GNU_RELRO) continue;
                const std::uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
                static_cast<std::vector<address_range>*>(out)->push_back(address_range{begin, begin + ph.p_memsz, 0});
            }
            return 0;
        },
        &relro);
    return relro;
}

bool overlaps(const address_range& a, const address_range& b) { return a.begin < b.end && b.begin < a.end; }

}  // namespace

std::vector<address_range> releasable_mappings(std::istream& smaps, const std::vector<address_range>& keep) {
    std::vector<address_range> found;
    address_range current;
    bool candidate = false, wrote = false;
    const auto close_mapping = [&] {
        const bool kept = std::any_of(keep.begin(), keep.end(), [&](const auto& k) { return overlaps(current, k); });
        if (candidate && !wrote && !kept) found.push_back(current);
        candidate = false;
    };
    std::string line;
    while (std::getline(smaps, line)) {
        address_range range;
        bool read_only_file = false;
        if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
            parse_mapping_header(line, range, read_only_file)) {
            close_mapping();
            current = range;
            candidate = read_only_file;
            wrote = false;
            continue;
        }
        if (!candidate) continue;
        if (is_field(line, "Rss")) current.resident_kb = field_kb(line);
        // Pages this process wrote (copy on write), resident or swapped out.
        if ((is_field(line, "Anonymous") || is_field(line, "Swap")) && field_kb(line) != 0) wrote = true;
    }
    close_mapping();
    return found;
}

std::size_t release_file_pages() {
    std::ifstream smaps("/proc/self/smaps");
    if (!smaps) return 0;
    std::size_t released = 0;
    for (const auto& m : releasable_mappings(smaps, relro_segments())) {
        if (m.resident_kb == 0) continue;
        if (::madvise(reinterpret_cast<void*>(m.begin), m.end - m.begin, MADV_DONTNEED) == 0) released += m.resident_kb * 1024;
    }
    return released;
}

void release_free_heap_pages() {
#if defined(__GLIBC__)
    ::malloc_trim(0);
#endif
}

std::size_t release_unused_pages() {
    release_free_heap_pages();
    return release_file_pages();
}

std::uint64_t resident_kb() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmRSS:", 0) == 0) return field_kb(line);
    return 0;
}

idle_memory_release::idle_memory_release(const session_registry& registry, store::ingest& ingest,
                                         std::chrono::milliseconds quiet_for)
    : registry_(registry),
      ingest_(ingest),
      quiet_for_(quiet_for),
      sessions_seen_(registry.sessions_added()),
      quiet_since_(clock::now()) {}

bool idle_memory_release::due(clock::time_point now) {
    if (registry_.total() > 0 || registry_.sessions_added() != sessions_seen_) {
        sessions_seen_ = registry_.sessions_added();
        quiet_since_ = now;
        released_ = false;
        return false;
    }
    if (released_ || now - quiet_since_ < quiet_for_) return false;
    released_ = true;
    ++releases_;
    return true;
}

void idle_memory_release::release() {
    const bool report = spdlog::should_log(spdlog::level::debug);
    const auto before = report ? resident_kb() : 0;
    ingest_.release_memory();
    const std::size_t code = release_unused_pages();
    if (!report) return;
#if defined(__GLIBC__)
    const auto heap = ::mallinfo2();
    spdlog::debug("idle for {} s: resident memory {} -> {} kB, {} kB of code and read-only data released (heap: {} kB in use, {} kB free)",
                  std::chrono::duration_cast<std::chrono::seconds>(quiet_for_).count(), before, resident_kb(),
                  code / 1024, heap.uordblks / 1024, heap.fordblks / 1024);
#endif
}

}  // namespace relaybait::net
