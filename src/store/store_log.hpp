#pragma once
// The store's log lines (internal to src/store). spdlog when the store is linked with it
// (spdlog::spdlog defines SPDLOG_COMPILED_LIB); stderr otherwise, never a second header-only
// spdlog with its own registry.
#include <string>

#if defined(SPDLOG_COMPILED_LIB) && __has_include(<spdlog/spdlog.h>)
#include <spdlog/spdlog.h>
#define RELAYBAIT_STORE_SPDLOG 1
#else
#include <cstdio>
#endif

namespace relaybait::store::detail {

inline void log_warning(const std::string& text) {
#ifdef RELAYBAIT_STORE_SPDLOG
    spdlog::warn("store: {}", text);
#else
    std::fprintf(stderr, "relaybait store: %s\n", text.c_str());
#endif
}

// Without spdlog there is no level to enable: debug lines are not written.
inline void log_debug([[maybe_unused]] const std::string& text) {
#ifdef RELAYBAIT_STORE_SPDLOG
    spdlog::debug("store: {}", text);
#endif
}

}  // namespace relaybait::store::detail
