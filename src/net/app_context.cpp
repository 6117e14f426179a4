#include "net/app_context.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace relaybait::net {

system_environment::system_environment() : generator_(std::random_device{}()) {}

std::chrono::system_clock::time_point system_environment::now() { return std::chrono::system_clock::now(); }

std::uint64_t system_environment::random() { return generator_(); }

std::uint64_t next_session_id(std::uint64_t last, std::int64_t unix_ms, std::uint64_t random) {
    // Milliseconds first, then 20 random bits: ids of one moment sort together, so the session
    // key's B-trees grow at their right edge instead of touching a random page per session.
    // Strictly increasing within the process: 20 random bits alone would collide (birthday)
    // a few times an hour at thousands of sessions a second.
    const std::uint64_t from_clock = (static_cast<std::uint64_t>(unix_ms) << 20) | (random & 0xFFFFF);
    return std::max(last + 1, from_clock);
}

std::string format_session_id(std::uint64_t id) {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(id));
    return text;
}

std::string app_context::new_session_id() {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(environment.now().time_since_epoch()).count();
    last_session_id = next_session_id(last_session_id, ms, environment.random());
    return format_session_id(last_session_id);
}

}  // namespace relaybait::net
