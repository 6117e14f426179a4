#pragma once
// The few header fields relaybait indexes, parsed from the (bounded) start of a message.
// Attacker-controlled: lenient, bounded, raw text (no RFC 2047 decoding yet).
#include <cstddef>
#include <string_view>

#include "store/records.hpp"

namespace relaybait::store {

inline constexpr std::size_t max_header_capture = 64 * 1024;  // bytes of the message kept for parsing
inline constexpr std::size_t max_header_value = 2048;         // bytes kept per parsed field

// Parses the header section at the start of `message` (up to the first empty line, or all of
// it). Unfolds continuation lines (a line starting with SP or HT continues the previous
// field; the line break is removed, the whitespace kept), accepts LF or CRLF line ends and
// whitespace before the colon, ignores lines that are not fields, keeps the first occurrence
// of each field, trims surrounding whitespace and bounds each value to max_header_value.
message_headers parse_headers(std::string_view message);

// Offset just past the empty line ending the header section, or npos when not (yet) seen.
std::size_t header_section_end(std::string_view message);

}  // namespace relaybait::store
