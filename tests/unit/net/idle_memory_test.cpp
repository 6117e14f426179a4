#include "net/idle_memory.hpp"

#include <gtest/gtest.h>
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "../store/ingest_test_support.hpp"
#include "../store/temp_dir.hpp"
#include "net/session_registry.hpp"
#include "store/ingest.hpp"

namespace relaybait::net {
namespace {

using namespace std::chrono_literals;

// Resident kB of the read-only mappings of `file` (code, constants).
std::uint64_t resident_read_only_kb(const std::string& file) {
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool ours = false;
    std::uint64_t total = 0;
    while (std::getline(smaps, line)) {
        const auto path_at = line.find('/');
        if (line.find('-') < line.find(' ') && line.find(' ') != std::string::npos &&
            std::isxdigit(static_cast<unsigned char>(line[0]))) {
            const std::string perms = line.substr(line.find(' ') + 1, 4);
            ours = path_at != std::string::npos && line.compare(path_at, std::string::npos, file) == 0 && perms[1] == '-';
        } else if (ours && line.rfind("Rss:", 0) == 0) {
            total += std::stoull(line.substr(4));
        }
    }
    return total;
}

// Called through a vtable that the dynamic loader relocated (RELRO): were relocated pages
// released, the call would jump through an unrelocated pointer.
struct shape {
    virtual ~shape() = default;
    virtual int sides() const = 0;
};
struct triangle final : shape {
    int sides() const override { return 3; }
};

std::string own_executable() {
    std::string exe(4096, '\0');
    exe.resize(static_cast<std::size_t>(::readlink("/proc/self/exe", exe.data(), exe.size() - 1)));
    return exe;
}

// The C library's file, as /proc/self/smaps names it (symbolic links resolved).
std::string c_library() {
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(&::snprintf), &info) == 0 || info.dli_fname == nullptr) return {};
    std::error_code ec;
    return std::filesystem::canonical(info.dli_fname, ec).string();
}

TEST(idle_memory, code_pages_are_released_and_mapped_back_when_they_run_again) {
    const std::string libc = c_library();
    ASSERT_FALSE(libc.empty());
    const auto program_before = resident_read_only_kb(own_executable());
    const auto libc_before = resident_read_only_kb(libc);
    ASSERT_GT(program_before, 0u);
    ASSERT_GT(libc_before, 0u);
    const std::size_t released = release_file_pages();
    EXPECT_GT(released, 0u);
    EXPECT_LT(resident_read_only_kb(own_executable()), program_before);
    EXPECT_LT(resident_read_only_kb(libc), libc_before);
    // Code and relocated data are intact: a virtual call through a volatile pointer (not
    // devirtualised), strings from the read-only data, the C library, the heap.
    std::unique_ptr<shape> made = std::make_unique<triangle>();
    shape* volatile through = made.get();
    EXPECT_EQ(through->sides(), 3);
    EXPECT_EQ(std::string("constant text"), "constant text");
    char formatted[32];
    std::snprintf(formatted, sizeof formatted, "%d-%.2f-%s", 42, 2.5, "x");
    EXPECT_STREQ(formatted, "42-2.50-x");
    EXPECT_DOUBLE_EQ(std::strtod("1e3", nullptr), 1000.0);
    EXPECT_GT(resident_kb(), 0u);
}

TEST(idle_memory, only_segments_mapped_read_only_from_their_file_without_written_pages_are_releasable) {
    std::istringstream smaps(
        "00400000-00500000 r--p 00000000 fd:01 11 /opt/relay bait/relaybait\n"  // a space in the path
        "Rss:                 100 kB\nAnonymous:             0 kB\nSwap:                  0 kB\n"
        "VmFlags: rd mr mw me\n"
        "00500000-00900000 r-xp 00100000 fd:01 11 /opt/relay bait/relaybait\n"
        "Rss:                2000 kB\nAnonymous:             0 kB\nSwap:                  0 kB\n"
        // text relocations: pages written, resident (Anonymous) or swapped out (Swap)
        "00900000-00a00000 r-xp 00500000 fd:01 12 /usr/lib/libold.so\n"
        "Rss:                  40 kB\nAnonymous:            40 kB\nSwap:                  0 kB\n"
        "00a00000-00b00000 r--p 00600000 fd:01 12 /usr/lib/libold.so\n"
        "Rss:                   0 kB\nAnonymous:             0 kB\nSwap:                 12 kB\n"
        // a segment split in two mappings (mprotect), both clean
        "00b00000-00b80000 r-xp 00000000 fd:01 13 /usr/lib/libc.so.6\n"
        "Rss:                 300 kB\nAnonymous:             0 kB\nSwap:                  0 kB\n"
        "00b80000-00c00000 r--p 00080000 fd:01 13 /usr/lib/libc.so.6\n"
        "Rss:                  20 kB\nAnonymous:             0 kB\nSwap:                  0 kB\n"
        // something else now where a segment was: writable, anonymous, a device
        "00c00000-00d00000 rw-p 00000000 fd:01 14 /usr/lib/libgone.so\n"
        "Rss:                   8 kB\nAnonymous:             0 kB\nSwap:                  0 kB\n"
        "00d00000-00e00000 r--p 00000000 00:00 0 \n"
        "Rss:                   4 kB\nAnonymous:             4 kB\nSwap:                  0 kB\n"
        "00e00000-00f00000 r--s 00000000 00:05 16 /dev/some-device\n"
        "Rss:                  64 kB\nAnonymous:             0 kB\nSwap:                  0 kB\n"
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
        "Rss:                   0 kB\nAnonymous:             0 kB\n");
    const std::vector<address_range> segments{
        {0x00400000, 0x00500000, 0}, {0x00500000, 0x00900000, 0},  // the program: releasable
        {0x00900000, 0x00a00000, 0}, {0x00a00000, 0x00b00000, 0},  // written pages
        {0x00b00000, 0x00c00000, 0},                               // split: releasable
        {0x00c00000, 0x00d00000, 0}, {0x00d00000, 0x00e00000, 0}, {0x00e00000, 0x00f00000, 0},
        {0x01000000, 0x01100000, 0},  // not mapped at all
    };
    const auto found = releasable_segments(smaps, segments);
    ASSERT_EQ(found.size(), 3u);
    EXPECT_EQ(found[0].begin, 0x00400000u);
    EXPECT_EQ(found[0].end, 0x00500000u);
    EXPECT_EQ(found[0].resident_kb, 100u);
    EXPECT_EQ(found[1].begin, 0x00500000u);
    EXPECT_EQ(found[1].resident_kb, 2000u);
    EXPECT_EQ(found[2].begin, 0x00b00000u);
    EXPECT_EQ(found[2].end, 0x00c00000u);
    EXPECT_EQ(found[2].resident_kb, 320u);
}

int writable_global = 7;

bool in_any(const std::vector<address_range>& ranges, const void* address) {
    const auto a = reinterpret_cast<std::uintptr_t>(address);
    for (const auto& r : ranges)
        if (a >= r.begin && a < r.end) return true;
    return false;
}

// What may be released: the code of the program and of the libraries it started with; never
// its data, never a library opened later (it could be closed and its addresses reused).
TEST(idle_memory, only_code_of_objects_loaded_with_the_program_is_a_candidate) {
    const auto& segments = code_segments_loaded_at_start();
    EXPECT_TRUE(in_any(segments, reinterpret_cast<const void*>(&own_executable)));
    EXPECT_TRUE(in_any(segments, reinterpret_cast<const void*>(&::snprintf)));
    EXPECT_FALSE(in_any(segments, &writable_global));
    void* later = ::dlopen("libresolv.so.2", RTLD_NOW | RTLD_LOCAL);
    if (later == nullptr) GTEST_SKIP() << "no library to open: " << ::dlerror();
    void* symbol = ::dlsym(later, "__b64_ntop");  // defined in libresolv itself (most of it moved to libc)
    Dl_info info{};
    ASSERT_NE(symbol, nullptr) << ::dlerror();
    ASSERT_NE(::dladdr(symbol, &info), 0);
    ASSERT_NE(std::string(info.dli_fname).find("libresolv"), std::string::npos) << info.dli_fname;
    EXPECT_FALSE(in_any(segments, symbol));
    ::dlclose(later);
}

TEST(idle_memory, releases_once_after_a_quiet_spell_that_followed_a_session) {
    test::temp_dir data;
    store::ingest ingest(store::ingest_options{data.path, 256, false, "sensor.test"});
    session_registry registry(10, 10);
    idle_memory_release idle(registry, ingest, 30s);
    const auto t0 = idle_memory_release::clock::now();

    EXPECT_FALSE(idle.due(t0 + 1h));  // no session since start: start-up released already

    auto session = registry.add("198.51.100.7", [] {});
    EXPECT_FALSE(idle.due(t0 + 1h + 1s));  // busy
    registry.remove(session);
    EXPECT_FALSE(idle.due(t0 + 1h + 2s));   // quiet counts from the last look that saw a session
    EXPECT_FALSE(idle.due(t0 + 1h + 30s));  // 29 s
    EXPECT_TRUE(idle.due(t0 + 1h + 31s));
    EXPECT_EQ(idle.releases(), 1u);
    EXPECT_FALSE(idle.due(t0 + 3h));  // once per quiet spell

    // A session that came and went between two looks counts as activity.
    registry.remove(registry.add("198.51.100.8", [] {}));
    EXPECT_FALSE(idle.due(t0 + 3h + 1s));
    EXPECT_TRUE(idle.due(t0 + 3h + 32s));
    EXPECT_EQ(idle.releases(), 2u);

    // The store still works after the release (its cache included): a message is committed and filed.
    idle.release();
    auto message = ingest.begin_message("", "Received: test\r\n");
    ingest.append(message, "Subject: after the release\r\n\r\nbody\r\n");
    EXPECT_TRUE(test::commit_and_wait(ingest, message, test::record_for("RELEASED01")).ok);
    EXPECT_EQ(ingest.committed(), 1u);
    EXPECT_EQ(test::count_files(data.path / "maildir" / "new"), 1u);
}

}  // namespace
}  // namespace relaybait::net
