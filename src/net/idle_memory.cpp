#include "net/idle_memory.hpp"

#include <spdlog/spdlog.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

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

struct mapping {
    address_range range;
    bool read_only_file = false;
    bool wrote = false;  // holds a page this process wrote (copy on write), resident or swapped out
};

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

std::vector<mapping> read_mappings(std::istream& smaps) {
    std::vector<mapping> found;
    std::string line;
    while (std::getline(smaps, line)) {
        address_range range;
        bool read_only_file = false;
        if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
            parse_mapping_header(line, range, read_only_file)) {
            found.push_back(mapping{range, read_only_file, false});
            continue;
        }
        if (found.empty()) continue;
        if (is_field(line, "Rss")) found.back().range.resident_kb = field_kb(line);
        if ((is_field(line, "Anonymous") || is_field(line, "Swap")) && field_kb(line) != 0) found.back().wrote = true;
    }
    return found;
}

bool overlaps(const address_range& a, const address_range& b) { return a.begin < b.end && b.begin < a.end; }

std::vector<address_range> find_code_segments() {
    struct search {
        std::vector<address_range> segments;
        std::uintptr_t page_size;
    } found{{}, static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE))};
    ::dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* out) {
            auto& found = *static_cast<search*>(out);
            for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
                const auto& ph = info->dlpi_phdr[i];
                if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W) != 0 || ph.p_memsz == 0) continue;
                const std::uintptr_t begin = info->dlpi_addr + ph.p_vaddr, end = begin + ph.p_memsz;
                const std::uintptr_t mask = found.page_size - 1;
                found.segments.push_back(address_range{begin & ~mask, (end + mask) & ~mask, 0});
            }
            return 0;
        },
        &found);
    return found.segments;
}

// Before main: only the program and the libraries it was started with are loaded (a library
// opened later with dlopen may be closed again, and its addresses reused).
const std::vector<address_range> code_segments_at_start = find_code_segments();

}  // namespace

const std::vector<address_range>& code_segments_loaded_at_start() { return code_segments_at_start; }

std::vector<address_range> releasable_segments(std::istream& smaps, const std::vector<address_range>& segments) {
    const std::vector<mapping> mappings = read_mappings(smaps);
    std::vector<address_range> found;
    for (address_range segment : segments) {
        bool covered = false, safe = true;
        for (const auto& m : mappings) {
            if (!overlaps(m.range, segment)) continue;
            covered = true;
            safe = safe && m.read_only_file && !m.wrote;
            segment.resident_kb += m.range.resident_kb;
        }
        if (covered && safe) found.push_back(segment);
    }
    return found;
}

std::size_t release_file_pages() {
    std::ifstream smaps("/proc/self/smaps");
    if (!smaps) return 0;
    std::size_t released = 0;
    for (const auto& s : releasable_segments(smaps, code_segments_at_start)) {
        if (s.resident_kb == 0) continue;
        if (::madvise(reinterpret_cast<void*>(s.begin), s.end - s.begin, MADV_DONTNEED) == 0) released += s.resident_kb * 1024;
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
    spdlog::debug("idle for {} s: resident memory {} -> {} kB, {} kB of code released (heap: {} kB in use, {} kB free)",
                  std::chrono::duration_cast<std::chrono::seconds>(quiet_for_).count(), before, resident_kb(),
                  code / 1024, heap.uordblks / 1024, heap.fordblks / 1024);
#endif
}

}  // namespace relaybait::net
