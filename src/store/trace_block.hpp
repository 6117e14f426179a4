#pragma once
// The trace block relaybait prepends to every stored message (written by net/trace_headers):
// our own "Received: from ..." line with its TAB continuation lines, then the X-Relaybait-*
// lines. It is part of the stored format, so the code that reads it back (the relay, the
// rule engine over stored mail) finds it here, next to the Maildir.
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace relaybait::store {

inline constexpr std::string_view trace_header_prefix = "X-Relaybait-";

// The message as the client sent it: `stored` minus the trace block. Returns `stored`
// unchanged when it does not start with such a block.
std::string_view strip_trace_block(std::string_view stored);

// "Mon, 01 Jan 2024 00:00:00 +0000 (UTC)": the date of our Received line (Postfix's form)
// and of the messages relaybait writes itself (the relay's daily log).
std::string rfc5322_date(std::chrono::system_clock::time_point when);

// Replaces CR, LF, NUL and other control bytes so a value cannot break out of its header;
// cut at max_length.
std::string header_safe(std::string_view value, std::size_t max_length = 998);

}  // namespace relaybait::store
