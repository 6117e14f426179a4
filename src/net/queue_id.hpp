#pragma once
// Queue ids in Postfix's short format: five hex digits of the microsecond clock followed by
// the hex "inode number" of the queue file. Scanners compare queue ids between sessions; a
// constant or obviously sequential id is a known honeypot tell.
#include <chrono>
#include <cstdint>
#include <string>

namespace relaybait::net {

class queue_id_generator {
public:
    explicit queue_id_generator(std::uint64_t seed);
    // Unique within this process run: the inode part advances on every call.
    std::string next(std::chrono::system_clock::time_point now);

private:
    std::uint32_t inode_;
    std::uint64_t state_;
};

}  // namespace relaybait::net
