#include "net/idle_memory.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "../store/temp_dir.hpp"
#include "net/session_registry.hpp"
#include "store/ingest.hpp"

namespace relaybait::net {
namespace {

using namespace std::chrono_literals;

// Resident kB of this test program's own read-only mappings (code, constants).
std::uint64_t resident_code_kb() {
    std::string exe(4096, '\0');
    exe.resize(static_cast<std::size_t>(::readlink("/proc/self/exe", exe.data(), exe.size() - 1)));
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool ours = false;
    std::uint64_t total = 0;
    while (std::getline(smaps, line)) {
        const auto path_at = line.find('/');
        if (line.find('-') < line.find(' ') && line.find(' ') != std::string::npos &&
            std::isxdigit(static_cast<unsigned char>(line[0]))) {
            const std::string perms = line.substr(line.find(' ') + 1, 4);
            ours = path_at != std::string::npos && line.compare(path_at, std::string::npos, exe) == 0 && perms[1] == '-';
        } else if (ours && line.rfind("Rss:", 0) == 0) {
            total += std::stoull(line.substr(4));
        }
    }
    return total;
}

int still_runs(int x) { return x * 2 + 1; }

TEST(idle_memory, code_pages_are_released_and_mapped_back_when_they_run_again) {
    const auto before = resident_code_kb();
    ASSERT_GT(before, 0u);
    const std::size_t released = release_code_pages();
    EXPECT_GT(released, 0u);
    // Code runs on (every instruction from here on is mapped back at first use) and is what the
    // file says: relocated data was not part of the release.
    EXPECT_EQ(still_runs(20), 41);
    EXPECT_LT(resident_code_kb(), before);
    EXPECT_GT(resident_kb(), 0u);
}

TEST(idle_memory, releases_once_after_a_quiet_spell_that_followed_a_session) {
    test::temp_dir data;
    store::ingest ingest(store::ingest_options{data.path, 256, false, "sensor.test"});
    session_registry registry(10, 10);
    idle_memory_release idle(registry, ingest, 30s);
    const auto t0 = idle_memory_release::clock::now();

    EXPECT_FALSE(idle.tick(t0 + 1h));  // no session since start: start-up released already

    auto session = registry.add("198.51.100.7", [] {});
    EXPECT_FALSE(idle.tick(t0 + 1h + 1s));  // busy
    registry.remove(session);
    EXPECT_FALSE(idle.tick(t0 + 1h + 2s));   // quiet counts from the last look that saw a session
    EXPECT_FALSE(idle.tick(t0 + 1h + 30s));  // 29 s
    EXPECT_TRUE(idle.tick(t0 + 1h + 31s));
    EXPECT_EQ(idle.releases(), 1u);
    EXPECT_FALSE(idle.tick(t0 + 3h));  // once per quiet spell

    // A session that came and went between two looks counts as activity.
    registry.remove(registry.add("198.51.100.8", [] {}));
    EXPECT_FALSE(idle.tick(t0 + 3h + 1s));
    EXPECT_TRUE(idle.tick(t0 + 3h + 32s));
    EXPECT_EQ(idle.releases(), 2u);

    // The store still works after its cache was released.
    ingest.release_memory();
    EXPECT_EQ(ingest.committed(), 0u);
}

}  // namespace
}  // namespace relaybait::net
