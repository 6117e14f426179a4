#pragma once
// The message to relay: the stored Maildir file minus relaybait's own trace block.
// Equivalent of net::strip_trace_headers (relay must not depend on net; the lead may move
// one shared copy into store/). The block is: a first line "Received: from ..." with its
// continuation lines (starting with TAB), then one or more lines starting "X-Relaybait-".
// Everything after is the original message, byte for byte.
#include <string>
#include <string_view>

namespace relaybait::relay {

std::string_view strip_trace_block(std::string_view stored);

// Lower-case hex SHA-256 (OpenSSL EVP).
std::string sha256_hex(std::string_view bytes);

// Replaces control bytes so a value cannot break out of a header line; cut at max_length.
std::string header_value(std::string_view value, std::size_t max_length = 900);

}  // namespace relaybait::relay
