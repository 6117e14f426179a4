#pragma once
// The headers relaybait prepends to every stored message: a Received line in Postfix's form
// and X-Relaybait-* lines with the facts of the session. They come from what relaybait saw
// on the wire, never from headers the client wrote; attacker bytes are made header-safe.
// The relay strips every X-Relaybait-* header before a probe leaves.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "smtp/engine.hpp"
#include "store/trace_block.hpp"

namespace relaybait::net {

using store::trace_header_prefix;
using store::header_safe;

struct trace_facts {
    const smtp::connection_facts& connection;
    const smtp::envelope& envelope;
    std::optional<smtp::tls_facts> tls;
    std::string_view queue_id;
    std::string_view session_id;
    std::chrono::system_clock::time_point received_at;
};

// CRLF-terminated header lines, folded like Postfix's.
std::string make_trace_headers(const trace_facts& facts);

// RFC 5322 date as Postfix writes it: "Mon, 23 Nov 2026 18:07:03 +0000 (UTC)".
using store::rfc5322_date;  // store/trace_block.hpp

}  // namespace relaybait::net
