#pragma once
// Helpers for the message to relay. The message itself is the stored Maildir file minus
// relaybait's own trace block: store::strip_trace_block (store/trace_block.hpp).
#include <string>
#include <string_view>

#include "store/sha256.hpp"
#include "store/trace_block.hpp"

namespace relaybait::relay {

// Lower-case hex SHA-256: the store's, so a relayed message's hash equals its messages.sha256.
using store::sha256_hex;
using store::strip_trace_block;
// Header-safe value for the headers relay writes (store::header_safe with a shorter cap).
inline std::string header_value(std::string_view value, std::size_t max_length = 900) {
    return store::header_safe(value, max_length);
}

}  // namespace relaybait::relay
