#pragma once
// Bytes from the network are not UTF-8 and Boost.JSON serialises std::string bytes raw, so
// anything attacker-controlled goes through here before it is written as JSON.
#include <boost/json/value.hpp>

#include <string>
#include <string_view>

namespace relaybait::events {

// True when `bytes` is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view bytes) noexcept;

// `bytes` with every ill-formed sequence replaced by U+FFFD (one per maximal ill-formed
// subpart, as WHATWG/Unicode recommend). Valid input is returned unchanged; control
// characters are kept (the JSON serialiser escapes them).
std::string to_json_safe(std::string_view bytes);

// Applies to_json_safe to every string and key inside `value`, in place.
void make_json_safe(boost::json::value& value);

}  // namespace relaybait::events
