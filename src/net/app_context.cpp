#include "net/app_context.hpp"

#include <cstdio>

namespace relaybait::net {

system_environment::system_environment() : generator_(std::random_device{}()) {}

std::chrono::system_clock::time_point system_environment::now() { return std::chrono::system_clock::now(); }

std::uint64_t system_environment::random() { return generator_(); }

std::string app_context::new_session_id() {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(environment.random()));
    return text;
}

}  // namespace relaybait::net
