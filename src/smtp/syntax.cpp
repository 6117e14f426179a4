#include "smtp/syntax.hpp"

#include <array>
#include <cstring>

namespace relaybait::smtp::syntax {
namespace {

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

// Postfix smtp_quoted(): copy up to the closing character, honouring nested "" and <>.
std::size_t quoted(std::string_view line, std::size_t pos, token& tok, char last) {
    std::string stack;
    char wanted = last;
    while (pos < line.size()) {
        char c = line[pos++];
        tok.text.push_back(c);
        if (c == '\\') {
            if (pos >= line.size()) break;
            tok.text.push_back(line[pos++]);
        } else if (c == wanted) {
            if (stack.empty()) return pos;
            wanted = stack.back();
            stack.pop_back();
        } else if (c == '"') {
            stack.push_back(wanted);
            wanted = '"';
        } else if (c == '<' && wanted == '>') {
            stack.push_back(wanted);
            wanted = '>';
        }
    }
    tok.error = true;
    return pos;
}

}  // namespace

std::vector<token> tokenize(std::string_view line) {
    std::vector<token> out;
    std::size_t pos = 0;
    while (pos < line.size()) {
        token tok;
        while (pos < line.size()) {
            char c = line[pos++];
            if (is_space(static_cast<unsigned char>(c))) {
                while (pos < line.size() && is_space(static_cast<unsigned char>(line[pos]))) ++pos;
                if (!tok.text.empty()) break;
            } else if (c == '<') {
                tok.address = true;
                tok.text.push_back(c);
                pos = quoted(line, pos, tok, '>');
            } else if (c == '[') {
                tok.text.push_back(c);
                pos = quoted(line, pos, tok, ']');
            } else if (c == '"') {
                tok.text.push_back(c);
                pos = quoted(line, pos, tok, '"');
            } else if (c == ':') {
                tok.text.push_back(c);
                if (iequals(tok.text, "to:") || iequals(tok.text, "from:")) break;
            } else {
                if (c == '\\') {
                    tok.text.push_back(c);
                    if (pos >= line.size()) break;
                    c = line[pos++];
                }
                tok.text.push_back(c);
            }
        }
        if (!tok.text.empty()) out.push_back(std::move(tok));
    }
    return out;
}

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) { ++i; continue; }
        std::size_t n;
        std::uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
        else return false;
        for (std::size_t k = 1; k <= n; ++k) {
            if (i + k >= s.size()) return false;
            unsigned char d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

std::size_t is_header(std::string_view word) {
    enum { init, in_char, in_char_space } state = init;
    std::size_t len = 0;
    for (char ch : word) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c == ':') return state == init ? 0 : len;
        if (c == ' ' || c == '\t') {
            if (state == in_char) state = in_char_space;
            if (state == in_char_space) continue;
            return 0;
        }
        if (c == 0 || c >= 0x80 || c < 0x20 || c == 0x7f) return 0;
        if (state == init) state = in_char;
        if (state != in_char) return 0;
        ++len;
    }
    return 0;
}

bool all_digits(std::string_view t) {
    if (t.empty()) return false;
    for (char c : t)
        if (c < '0' || c > '9') return false;
    return true;
}

bool all_ascii(std::string_view t) {
    for (char c : t)
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    return true;
}

bool valid_hostname(std::string_view name, bool allow_utf8) {
    if (name.empty() || name.size() > 255) return false;
    if (name.back() == '.') name.remove_suffix(1);
    std::size_t label = 0;
    bool all_numeric = true;
    for (std::size_t i = 0; i < name.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(name[i]);
        if (c == '.') {
            if (label == 0 || name[i - 1] == '-') return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  (c == '-' && label > 0) || (allow_utf8 && c >= 0x80);
        if (!ok) return false;
        if (!(c >= '0' && c <= '9')) all_numeric = false;
        if (++label > 63) return false;
    }
    if (label == 0 || name.back() == '-') return false;
    return !all_numeric;
}

bool valid_address_literal(std::string_view lit) {
    if (lit.size() < 3 || lit.front() != '[' || lit.back() != ']') return false;
    std::string_view in = lit.substr(1, lit.size() - 2);
    if (in.size() > 5 && iequals(in.substr(0, 5), "ipv6:")) {
        in.remove_prefix(5);
        if (in.empty()) return false;
        for (char c : in)
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.'))
                return false;
        return true;
    }
    int parts = 0;
    std::size_t i = 0;
    while (i <= in.size()) {
        std::size_t j = in.find('.', i);
        if (j == std::string_view::npos) j = in.size();
        std::string_view part = in.substr(i, j - i);
        if (part.empty() || part.size() > 3 || !all_digits(part) || std::stoi(std::string(part)) > 255) return false;
        ++parts;
        i = j + 1;
    }
    return parts == 4;
}

address_result extract_address(const token& tok, bool allow_empty, bool smtputf8) {
    address_result r;
    if (tok.error) return r;
    std::string_view a = tok.text;
    if (!a.empty() && a.front() == '<') {
        if (a.size() < 2 || a.back() != '>') return r;
        a = a.substr(1, a.size() - 2);
    }
    // RFC 5321 source route: @a,@b:user@domain
    if (!a.empty() && a.front() == '@') {
        std::size_t colon = a.find(':');
        if (colon == std::string_view::npos) return r;
        a.remove_prefix(colon + 1);
    }
    if (a.empty()) {
        r.ok = allow_empty;
        return r;
    }
    // Scan: no unquoted whitespace or specials; find the last unquoted '@'. Like Postfix's
    // parser, earlier '@'s stay in the local part (<a@b@c>), to be re-resolved later.
    bool in_quote = false;
    std::size_t at = std::string_view::npos;
    for (std::size_t i = 0; i < a.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(a[i]);
        if (c == '\\') { ++i; continue; }
        if (c == '"') { in_quote = !in_quote; continue; }
        if (in_quote) continue;
        if (is_space(c) || c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '(' || c == ')' || c == ',' ||
            c == ';')
            return r;
        if (c == '@') at = i;
    }
    if (in_quote) return r;
    if (at != std::string_view::npos) {
        std::string_view local = a.substr(0, at), domain = a.substr(at + 1);
        if (local.empty() || domain.empty()) return r;
        bool literal = domain.front() == '[';
        if (literal ? !valid_address_literal(domain) : !valid_hostname(domain, true)) return r;
        if (!smtputf8 && !all_ascii(domain)) return r;
    }
    r.ok = true;
    r.address = std::string(a);
    return r;
}

namespace {
int b64value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}
}  // namespace

std::optional<std::string> base64_decode(std::string_view in) {
    if (in.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(in.size() / 4 * 3);
    for (std::size_t i = 0; i < in.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            char c = in[i + k];
            if (c == '=') {
                if (i + 4 != in.size() || k < 2) return std::nullopt;
                v[k] = 0;
                ++pad;
            } else {
                if (pad) return std::nullopt;
                v[k] = b64value(c);
                if (v[k] < 0) return std::nullopt;
            }
        }
        std::uint32_t n = (static_cast<std::uint32_t>(v[0]) << 18) | (static_cast<std::uint32_t>(v[1]) << 12) |
                          (static_cast<std::uint32_t>(v[2]) << 6) | static_cast<std::uint32_t>(v[3]);
        out.push_back(static_cast<char>((n >> 16) & 0xFF));
        if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xFF));
        if (pad < 1) out.push_back(static_cast<char>(n & 0xFF));
    }
    return out;
}

sasl_base64 sasl_decode64(std::string_view in, std::string& out) {
    std::size_t whole = in.size() - in.size() % 4;
    auto decoded = base64_decode(in.substr(0, whole));
    if (!decoded) return sasl_base64::bad_protocol;
    if (whole != in.size()) {
        // A padded group before the partial one is still bad; otherwise Cyrus wants more input.
        if (whole > 0 && in[whole - 1] == '=') return sasl_base64::bad_protocol;
        return sasl_base64::incomplete;
    }
    out = std::move(*decoded);
    return sasl_base64::ok;
}

std::string internalize(std::string_view address) {
    std::string out;
    out.reserve(address.size());
    for (std::size_t i = 0; i < address.size(); ++i) {
        char c = address[i];
        if (c == '\\' && i + 1 < address.size()) {
            out.push_back(address[++i]);
        } else if (c != '"') {
            out.push_back(c);
        }
    }
    return out;
}

std::optional<std::string> xtext_decode(std::string_view in) {
    std::string out;
    for (std::size_t i = 0; i < in.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(in[i]);
        if (c == '+') {
            if (i + 2 >= in.size()) return std::nullopt;
            auto hex = [](char h) -> int {
                if (h >= '0' && h <= '9') return h - '0';
                if (h >= 'A' && h <= 'F') return h - 'A' + 10;
                return -1;
            };
            int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return std::nullopt;
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    return out;
}

// ---- MD5 (RFC 1321) and HMAC-MD5 (RFC 2104), only for verifying CRAM-MD5 responses ----
namespace {
struct md5 {
    std::uint32_t h[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
    unsigned char buf[64];
    std::uint64_t len = 0;

    static std::uint32_t rotl(std::uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }
    void block(const unsigned char* p) {
        static constexpr std::uint32_t k[64] = {
            0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
            0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
            0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
            0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
            0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
            0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
            0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
            0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
        static constexpr int r[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                      5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                                      4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                      6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};
        std::uint32_t w[16];
        for (int i = 0; i < 16; ++i)
            w[i] = static_cast<std::uint32_t>(p[i * 4]) | (static_cast<std::uint32_t>(p[i * 4 + 1]) << 8) |
                   (static_cast<std::uint32_t>(p[i * 4 + 2]) << 16) | (static_cast<std::uint32_t>(p[i * 4 + 3]) << 24);
        std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
        for (int i = 0; i < 64; ++i) {
            std::uint32_t f;
            int g;
            if (i < 16) { f = (b & c) | (~b & d); g = i; }
            else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) % 16; }
            else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) % 16; }
            else { f = c ^ (b | ~d); g = (7 * i) % 16; }
            std::uint32_t tmp = d;
            d = c;
            c = b;
            b = b + rotl(a + f + k[i] + w[g], r[i]);
            a = tmp;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    }
    void update(std::string_view s) {
        for (char ch : s) {
            buf[len % 64] = static_cast<unsigned char>(ch);
            ++len;
            if (len % 64 == 0) block(buf);
        }
    }
    std::array<unsigned char, 16> finish() {
        std::uint64_t bits = len * 8;
        update(std::string_view("\x80", 1));
        while (len % 64 != 56) update(std::string_view("\0", 1));
        for (int i = 0; i < 8; ++i) {
            char c = static_cast<char>((bits >> (8 * i)) & 0xFF);
            update(std::string_view(&c, 1));
        }
        std::array<unsigned char, 16> out{};
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) out[i * 4 + j] = static_cast<unsigned char>((h[i] >> (8 * j)) & 0xFF);
        return out;
    }
};
}  // namespace

std::string hmac_md5_hex(std::string_view key, std::string_view message) {
    std::string k(key);
    if (k.size() > 64) {
        md5 m;
        m.update(k);
        auto d = m.finish();
        k.assign(reinterpret_cast<const char*>(d.data()), d.size());
    }
    k.resize(64, '\0');
    std::string ipad(k), opad(k);
    for (auto& c : ipad) c = static_cast<char>(c ^ 0x36);
    for (auto& c : opad) c = static_cast<char>(c ^ 0x5c);
    md5 inner;
    inner.update(ipad);
    inner.update(message);
    auto id = inner.finish();
    md5 outer;
    outer.update(opad);
    outer.update(std::string_view(reinterpret_cast<const char*>(id.data()), id.size()));
    auto od = outer.finish();
    static constexpr char hexd[] = "0123456789abcdef";
    std::string hex;
    for (unsigned char c : od) {
        hex.push_back(hexd[c >> 4]);
        hex.push_back(hexd[c & 15]);
    }
    return hex;
}

}  // namespace relaybait::smtp::syntax
