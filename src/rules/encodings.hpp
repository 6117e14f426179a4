// The encodings spammers use to hide the relay's address in a probe, so that rules can look
// for them: encoded("1.2.3.4") expands to the value and each of these forms.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/text.hpp"

namespace relaybait::rules {

struct encoded_form {
    std::string text;
    bool exact = false;  // compare case-sensitively (base64)
    std::string kind;    // "plain", "base64@0", "hex", "reversed", ...
};

using text::base64_encode;  // RFC 4648, padded

// The part of base64(P + value + S) that depends only on `value` when |P| % 3 == offset
// (offset 0, 1 or 2). Empty when that part would be shorter than 4 characters.
std::string base64_at_offset(std::string_view value, int offset);

// value itself, base64 at offsets 0/1/2, hex (lower, upper), reversed, URL-encoded (standard
// and every byte %XX), and for IP addresses: IPv4 with leading zeros, reversed octets,
// "[a.b.c.d]", the 32-bit decimal form; IPv6 compressed/expanded. Unique, none empty.
std::vector<encoded_form> encodings(std::string_view value);

}  // namespace relaybait::rules
