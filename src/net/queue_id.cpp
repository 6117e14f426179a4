#include "net/queue_id.hpp"

#include <cstdio>

namespace relaybait::net {

namespace {
std::uint64_t splitmix(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
}  // namespace

queue_id_generator::queue_id_generator(std::uint64_t seed) : state_(seed) {
    // A spool inode in the range a real, busy Postfix shows (6 to 7 hex digits).
    inode_ = 0x200000u + static_cast<std::uint32_t>(splitmix(state_) % 0xD00000u);
}

std::string queue_id_generator::next(std::chrono::system_clock::time_point now) {
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
    const auto usec = static_cast<unsigned>(micros % 1'000'000);
    // Queue files are created and deleted all the time, so the inode drifts by small steps.
    inode_ += 1 + static_cast<std::uint32_t>(splitmix(state_) % 3);
    if (inode_ > 0xFFFFFFFu) inode_ = 0x200000u;
    char text[24];
    std::snprintf(text, sizeof text, "%05X%X", usec, inode_);
    return text;
}

}  // namespace relaybait::net
