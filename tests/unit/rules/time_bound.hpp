#pragma once
// Time bounds in the rules tests are set for an optimised build: a sanitizer build runs every
// byte ~10-20x slower, so its bounds are wider (still far below what a quadratic scan costs).
#include <chrono>

namespace relaybait::rules::testing {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr int sanitizer_slowdown = 20;
#else
inline constexpr int sanitizer_slowdown = 1;
#endif

constexpr std::chrono::milliseconds time_bound(int optimised_ms) {
    return std::chrono::milliseconds(optimised_ms * sanitizer_slowdown);
}

}  // namespace relaybait::rules::testing
