#include "net/idle_memory.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>
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
    std::uintptr_t begin = 0, end = 0;
    bool read_only_of_executable = false;
    std::uint64_t rss_kb = 0;
};

std::string executable_path() {
    std::string path(4096, '\0');
    const ssize_t n = ::readlink("/proc/self/exe", path.data(), path.size() - 1);
    if (n <= 0) return {};
    path.resize(static_cast<std::size_t>(n));
    return path;
}

// "55d0c0a00000-55d0c0b00000 r-xp 00001000 fd:01 1234   /path" -> range, permissions, path.
bool parse_mapping_header(const std::string& line, const std::string& exe, mapping& out) {
    const auto dash = line.find('-');
    const auto space = line.find(' ');
    if (dash == std::string::npos || space == std::string::npos || dash > space) return false;
    try {
        out = mapping{};
        out.begin = std::stoull(line.substr(0, dash), nullptr, 16);
        out.end = std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16);
    } catch (const std::exception&) {
        return false;
    }
    const std::string perms = line.substr(space + 1, 4);
    const auto path_at = line.find('/');
    const bool ours = path_at != std::string::npos && line.compare(path_at, std::string::npos, exe) == 0;
    out.read_only_of_executable = ours && perms.size() == 4 && perms[1] == '-';
    return true;
}

std::uint64_t field_kb(const std::string& line) {
    try {
        return std::stoull(line.substr(line.find(':') + 1));
    } catch (const std::exception&) {
        return 0;
    }
}

// The executable's read-only mappings whose resident pages are all the file's (no private or
// anonymous pages): safe to unmap, a later access maps the same bytes back.
std::vector<mapping> read_only_executable_mappings() {
    const std::string exe = executable_path();
    std::vector<mapping> found;
    if (exe.empty()) return found;
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    mapping current;
    bool in_candidate = false;
    while (std::getline(smaps, line)) {
        if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && parse_mapping_header(line, exe, current)) {
            in_candidate = current.read_only_of_executable;
            continue;
        }
        if (!in_candidate) continue;
        if (line.rfind("Rss:", 0) == 0) current.rss_kb = field_kb(line);
        // Anonymous: pages this process wrote (copy on write, e.g. relocations). Dirty file
        // pages (Private_Dirty without Anonymous: a binary not yet written back) are fine.
        if (line.rfind("Anonymous:", 0) == 0) {
            if (field_kb(line) == 0) found.push_back(current);
            in_candidate = false;
        }
    }
    return found;
}

}  // namespace

std::size_t release_code_pages() {
    std::size_t released = 0;
    for (const auto& m : read_only_executable_mappings()) {
        if (m.rss_kb == 0) continue;
        if (::madvise(reinterpret_cast<void*>(m.begin), m.end - m.begin, MADV_DONTNEED) == 0) released += m.rss_kb * 1024;
    }
    return released;
}

void release_free_heap_pages() {
#if defined(__GLIBC__)
    ::malloc_trim(0);
#endif
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

bool idle_memory_release::tick(clock::time_point now) {
    if (registry_.total() > 0 || registry_.sessions_added() != sessions_seen_) {
        sessions_seen_ = registry_.sessions_added();
        quiet_since_ = now;
        released_ = false;
        return false;
    }
    if (released_ || now - quiet_since_ < quiet_for_) return false;
    const auto before = resident_kb();
    release_free_heap_pages();
    ingest_.release_memory();
    release_code_pages();
    released_ = true;
    ++releases_;
#if defined(__GLIBC__)
    const auto heap = ::mallinfo2();
    spdlog::debug("idle for {} s: resident memory {} -> {} kB (heap: {} kB in use, {} kB free, {} kB mmapped)",
                  std::chrono::duration_cast<std::chrono::seconds>(quiet_for_).count(), before, resident_kb(),
                  heap.uordblks / 1024, heap.fordblks / 1024, heap.hblkhd / 1024);
#endif
    return true;
}

boost::asio::awaitable<void> idle_memory_release::run(std::chrono::milliseconds period) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    for (;;) {
        timer.expires_after(period);
        auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        if (ec || registry_.stopped()) co_return;
        tick(clock::now());
    }
}

}  // namespace relaybait::net
