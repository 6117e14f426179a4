#include "events/json_safe.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/string.hpp>

#include <cstdint>
#include <cstring>
#include <utility>

namespace relaybait::events {
namespace {

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 when ill-formed; in that
// case *bad receives the length of the maximal ill-formed subpart (>= 1) to replace.
std::size_t sequence_length(std::string_view s, std::size_t i, std::size_t* bad) noexcept {
    const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(s[k]); };
    const std::uint8_t b0 = byte(i);
    *bad = 1;
    if (b0 < 0x80) return 1;
    std::size_t need = 0;
    std::uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
    } else if (b0 == 0xE0) {
        need = 3, lo = 0xA0;
    } else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) {
        need = 3;
    } else if (b0 == 0xED) {
        need = 3, hi = 0x9F;  // no surrogates
    } else if (b0 == 0xF0) {
        need = 4, lo = 0x90;
    } else if (b0 >= 0xF1 && b0 <= 0xF3) {
        need = 4;
    } else if (b0 == 0xF4) {
        need = 4, hi = 0x8F;
    } else {
        return 0;  // 0x80..0xC1, 0xF5..0xFF never start a sequence
    }
    for (std::size_t k = 1; k < need; ++k) {
        if (i + k >= s.size()) {
            *bad = k;
            return 0;
        }
        const std::uint8_t b = byte(i + k);
        const std::uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) {
            *bad = k;
            return 0;
        }
    }
    return need;
}

}  // namespace

bool is_valid_utf8(std::string_view bytes) noexcept {
    std::size_t bad = 0;
    for (std::size_t i = 0; i < bytes.size();) {
        // ASCII runs (nearly everything an SMTP session produces) 8 bytes at a time.
        if (i + 8 <= bytes.size()) {
            std::uint64_t word;
            std::memcpy(&word, bytes.data() + i, 8);
            if ((word & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        if (static_cast<std::uint8_t>(bytes[i]) < 0x80) {
            ++i;
            continue;
        }
        const std::size_t n = sequence_length(bytes, i, &bad);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

std::string to_json_safe(std::string_view bytes) {
    if (is_valid_utf8(bytes)) return std::string(bytes);
    std::string out;
    out.reserve(bytes.size() + 16);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < bytes.size();) {
        const std::size_t n = sequence_length(bytes, i, &bad);
        if (n == 0) {
            out += "\xEF\xBF\xBD";
            i += bad;
        } else {
            out.append(bytes.substr(i, n));
            i += n;
        }
    }
    return out;
}

void make_json_safe(boost::json::value& value) {
    if (auto* s = value.if_string()) {
        if (!is_valid_utf8(*s)) *s = to_json_safe(*s);
    } else if (auto* a = value.if_array()) {
        for (auto& v : *a) make_json_safe(v);
    } else if (auto* o = value.if_object()) {
        bool keys_ok = true;
        for (auto& kv : *o) {
            make_json_safe(kv.value());
            if (!is_valid_utf8(kv.key())) keys_ok = false;
        }
        if (!keys_ok) {
            boost::json::object fixed(o->storage());
            for (auto& kv : *o) fixed[to_json_safe(kv.key())] = std::move(kv.value());
            *o = std::move(fixed);
        }
    }
}

}  // namespace relaybait::events
