#include "rules/expr.hpp"

#include <arpa/inet.h>
#include <re2/re2.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>

#include "common/text.hpp"
#include "mime/message.hpp"
#include "rules/encodings.hpp"
#include "rules/needle_automaton.hpp"

namespace relaybait::rules {

// ---------------------------------------------------------------------------------------------
// Positions and tokens

text_position position_of(std::string_view text, std::size_t offset) {
    text_position pos;
    offset = std::min(offset, text.size());
    for (std::size_t i = 0; i < offset; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '\n') {
            ++pos.line;
            pos.column = 1;
        } else if ((c & 0xC0) != 0x80) {
            ++pos.column;
        }
    }
    return pos;
}

namespace {

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

std::string describe(const token& t) {
    switch (t.kind) {
        case token_kind::identifier: return "'" + t.text + "'";
        case token_kind::reference: return "'$" + t.text + "'";
        case token_kind::string: return "a string";
        case token_kind::integer: return "the number " + t.text;
        case token_kind::lparen: return "'('";
        case token_kind::rparen: return "')'";
        case token_kind::lbracket: return "'['";
        case token_kind::rbracket: return "']'";
        case token_kind::comma: return "','";
        case token_kind::symbol: return "'" + t.text + "'";
        case token_kind::end: return "the end of the expression";
    }
    return "?";
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

}  // namespace

std::vector<token> tokenize(std::string_view text) {
    if (text.size() > max_expression_bytes)
        throw expression_error(max_expression_bytes, "expression longer than " + std::to_string(max_expression_bytes) + " bytes");
    std::vector<token> tokens;
    std::size_t i = 0;
    while (true) {
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')) ++i;
        if (i < text.size() && text[i] == '#') {  // comment to end of line
            while (i < text.size() && text[i] != '\n') ++i;
            continue;
        }
        if (i >= text.size()) break;
        const std::size_t start = i;
        const char c = text[i];
        if (ident_start(c)) {
            while (i < text.size() && (ident_char(text[i]) || (text[i] == '-' && i + 1 < text.size() && ident_start(text[i + 1]))))
                ++i;
            tokens.push_back({token_kind::identifier, std::string(text.substr(start, i - start)), start});
        } else if (c == '$') {
            ++i;
            if (i >= text.size() || !ident_start(text[i])) throw expression_error(start, "expected a name after '$'");
            while (i < text.size() && (ident_char(text[i]) || (text[i] == '.' && i + 1 < text.size() && ident_start(text[i + 1]))))
                ++i;
            tokens.push_back({token_kind::reference, std::string(text.substr(start + 1, i - start - 1)), start});
        } else if (std::isdigit(static_cast<unsigned char>(c)) || (c == '-' && i + 1 < text.size() && std::isdigit(static_cast<unsigned char>(text[i + 1])))) {
            ++i;
            while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
            if (i < text.size() && ident_char(text[i])) throw expression_error(i, "unexpected character after a number");
            token t{token_kind::integer, std::string(text.substr(start, i - start)), start};
            const auto [ptr, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), t.number);
            if (ec != std::errc() || ptr != t.text.data() + t.text.size()) throw expression_error(start, "number out of range");
            tokens.push_back(std::move(t));
        } else if (c == '"' || c == '\'') {
            const char quote = c;
            ++i;
            std::string value;
            bool closed = false;
            while (i < text.size()) {
                const char d = text[i];
                if (d == quote) {
                    closed = true;
                    ++i;
                    break;
                }
                if (d == '\n') break;
                if (d == '\\') {
                    if (i + 1 >= text.size()) break;
                    const char e = text[i + 1];
                    switch (e) {
                        case '\\': value += '\\'; i += 2; break;
                        case '"': value += '"'; i += 2; break;
                        case '\'': value += '\''; i += 2; break;
                        case 'n': value += '\n'; i += 2; break;
                        case 'r': value += '\r'; i += 2; break;
                        case 't': value += '\t'; i += 2; break;
                        case '0': value += '\0'; i += 2; break;
                        case 'x': {
                            const int hi = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
                            const int lo = i + 3 < text.size() ? hex_value(text[i + 3]) : -1;
                            if (hi < 0 || lo < 0) throw expression_error(i, "\\x needs two hex digits");
                            value += static_cast<char>(hi * 16 + lo);
                            i += 4;
                            break;
                        }
                        case 'u': {
                            std::uint32_t cp = 0;
                            for (int k = 0; k < 4; ++k) {
                                const int h = i + 2 + k < text.size() ? hex_value(text[i + 2 + k]) : -1;
                                if (h < 0) throw expression_error(i, "\\u needs four hex digits");
                                cp = cp * 16 + static_cast<std::uint32_t>(h);
                            }
                            if (cp >= 0xD800 && cp <= 0xDFFF) throw expression_error(i, "\\u names a surrogate");
                            append_utf8(value, cp);
                            i += 6;
                            break;
                        }
                        default:
                            throw expression_error(i, std::string("unknown escape \\") +
                                                          (std::isprint(static_cast<unsigned char>(e)) ? std::string(1, e) : "?"));
                    }
                    continue;
                }
                value += d;
                ++i;
            }
            if (!closed) throw expression_error(start, "unterminated string");
            tokens.push_back({token_kind::string, std::move(value), start});
        } else if (c == '(') {
            tokens.push_back({token_kind::lparen, "(", start}), ++i;
        } else if (c == ')') {
            tokens.push_back({token_kind::rparen, ")", start}), ++i;
        } else if (c == '[') {
            tokens.push_back({token_kind::lbracket, "[", start}), ++i;
        } else if (c == ']') {
            tokens.push_back({token_kind::rbracket, "]", start}), ++i;
        } else if (c == ',') {
            tokens.push_back({token_kind::comma, ",", start}), ++i;
        } else if (c == '=' || c == '!' || c == '<' || c == '>') {
            std::string sym(1, c);
            ++i;
            if (i < text.size() && text[i] == '=') sym += '=', ++i;
            if (sym == "=" || sym == "!") throw expression_error(start, "unknown operator '" + sym + "' (use == or !=, or 'not')");
            tokens.push_back({token_kind::symbol, sym, start});
        } else {
            const auto u = static_cast<unsigned char>(c);
            throw expression_error(start, std::isprint(u) ? std::string("unexpected character '") + c + "'"
                                                          : "unexpected byte in expression");
        }
        if (tokens.size() > 4096) throw expression_error(start, "too many tokens");
    }
    tokens.push_back({token_kind::end, "", text.size()});
    return tokens;
}

// ---------------------------------------------------------------------------------------------
// Fields

const std::vector<field_info>& all_fields() {
    using H = hook_point;
    using T = field_type;
    static const std::vector<field_info> fields = {
        {"client_ip", field_id::client_ip, T::ip, H::connect, false, 0},
        {"listener", field_id::listener, T::text, H::connect, false, 0},
        {"tls", field_id::tls, T::boolean, H::connect, false, 0},
        {"tls_version", field_id::tls_version, T::text, H::connect, false, 0},
        {"helo", field_id::helo, T::text, H::ehlo, false, 0},
        {"auth_user", field_id::auth_user, T::text, H::auth, false, 0},
        {"auth_password", field_id::auth_password, T::text, H::auth, false, 0},
        {"authenticated", field_id::authenticated, T::boolean, H::auth, false, 0},
        {"mail_from", field_id::mail_from, T::text, H::mail, false, 0},
        {"mail_from_domain", field_id::mail_from_domain, T::text, H::mail, false, 0},
        {"rcpt_to", field_id::rcpt_to, T::text, H::rcpt, true, 0},
        {"rcpt_domain", field_id::rcpt_domain, T::text, H::rcpt, true, 0},
        {"rcpt_count", field_id::rcpt_count, T::number, H::rcpt, false, 0},
        {"header", field_id::header, T::text, H::data, true, 's'},
        {"headers", field_id::headers, T::text, H::data, true, 0},
        {"header_names", field_id::header_names, T::text, H::data, true, 0},
        {"header_count", field_id::header_count, T::number, H::data, false, 0},
        {"subject", field_id::subject, T::text, H::data, false, 0},
        {"from", field_id::from, T::text, H::data, false, 0},
        {"to", field_id::to, T::text, H::data, false, 0},
        {"body", field_id::body, T::text, H::data, false, 0},
        {"html", field_id::html, T::text, H::data, false, 0},
        {"body_tail", field_id::body_tail, T::text, H::data, false, 'n'},
        {"attachment_names", field_id::attachment_names, T::text, H::data, true, 0},
        {"attachment_types", field_id::attachment_types, T::text, H::data, true, 0},
        {"attachment_sha256", field_id::attachment_sha256, T::text, H::data, true, 0},
        {"attachment_count", field_id::attachment_count, T::number, H::data, false, 0},
        {"size", field_id::size, T::number, H::data, false, 0},
    };
    return fields;
}

const field_info* find_field(std::string_view name) {
    // Dotted aliases read well as references: $auth.user, $auth.password, $mail.from.
    if (name == "auth.user") name = "auth_user";
    else if (name == "auth.password") name = "auth_password";
    else if (name == "client.ip") name = "client_ip";
    for (const auto& f : all_fields())
        if (f.name == name) return &f;
    return nullptr;
}

const field_info& info(field_id id) { return all_fields()[static_cast<std::size_t>(id)]; }

// ---------------------------------------------------------------------------------------------
// Addresses

bool parse_ip(std::string_view text, cidr& out) {
    if (text.size() > 64) return false;
    std::string s(text);
    if (s.size() > 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
    if (s.rfind("IPv6:", 0) == 0 || s.rfind("ipv6:", 0) == 0) s = s.substr(5);
    in_addr v4{};
    in6_addr v6{};
    out = cidr{};
    if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
        out.family = 4;
        std::memcpy(out.address, &v4, 4);
        out.prefix = 32;
        return true;
    }
    if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(v6.s6_addr, mapped, 12) == 0) {
            out.family = 4;
            std::memcpy(out.address, v6.s6_addr + 12, 4);
            out.prefix = 32;
            return true;
        }
        out.family = 6;
        std::memcpy(out.address, v6.s6_addr, 16);
        out.prefix = 128;
        return true;
    }
    return false;
}

bool parse_cidr(std::string_view text, cidr& out) {
    const auto slash = text.find('/');
    if (!parse_ip(text.substr(0, slash), out)) return false;
    if (slash == std::string_view::npos) return true;
    const std::string_view bits = text.substr(slash + 1);
    int prefix = -1;
    const auto [ptr, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
    if (bits.empty() || ec != std::errc() || ptr != bits.data() + bits.size()) return false;
    // A v4-mapped v6 network keeps its meaning as a v4 network.
    if (out.family == 4 && text.substr(0, slash).find(':') != std::string_view::npos) {
        if (prefix < 96 || prefix > 128) return false;
        prefix -= 96;
    }
    if (prefix < 0 || prefix > (out.family == 4 ? 32 : 128)) return false;
    out.prefix = prefix;
    return true;
}

namespace {

bool cidr_contains(const cidr& net, const cidr& ip) {
    if (net.family != ip.family) return false;
    const int full = net.prefix / 8;
    if (std::memcmp(net.address, ip.address, static_cast<std::size_t>(full)) != 0) return false;
    const int rest = net.prefix % 8;
    if (rest == 0) return true;
    const unsigned char mask = static_cast<unsigned char>(0xFF << (8 - rest));
    return (net.address[full] & mask) == (ip.address[full] & mask);
}

// ---------------------------------------------------------------------------------------------
// Text matching without copies: ASCII case folding on the fly, and for 'contains' one pass over
// the value for all the needles of a comparison (encoded($self.ip) alone is ~25 needles).

struct fold_table {
    unsigned char to[256];
    constexpr fold_table() : to() {
        for (int c = 0; c < 256; ++c) to[c] = static_cast<unsigned char>(text::ascii_lower(static_cast<char>(c)));
    }
};
constexpr fold_table fold{};

inline unsigned char folded(char c) { return fold.to[static_cast<unsigned char>(c)]; }

// hay[at, at + nd.size) equals the needle (ASCII case-insensitively unless exact).
inline bool equal_at(std::string_view hay, std::size_t at, const needle& nd, bool exact) {
    const std::size_t len = nd.text.size();
    if (exact) return std::memcmp(hay.data() + at, nd.text.data(), len) == 0;
    const char* h = hay.data() + at;
    const char* l = nd.lower.data();
    for (std::size_t k = 0; k < len; ++k)
        if (folded(h[k]) != static_cast<unsigned char>(l[k])) return false;
    return true;
}

// Same result as text_match(oper, exact ? hay : lower(hay), exact ? text : lower(text)).
bool match_one(op oper, std::string_view hay, const needle& nd, bool exact) {
    const std::size_t len = nd.text.size();
    switch (oper) {
        case op::contains: {
            if (len == 0 || hay.size() < len) return false;
            if (exact) return hay.find(nd.text) != std::string_view::npos;
            const auto first = static_cast<unsigned char>(nd.lower[0]);
            const std::size_t last = hay.size() - len;
            for (std::size_t i = 0; i <= last; ++i)
                if (folded(hay[i]) == first && equal_at(hay, i, nd, false)) return true;
            return false;
        }
        case op::startswith: return len != 0 && hay.size() >= len && equal_at(hay, 0, nd, exact);
        case op::endswith: return len != 0 && hay.size() >= len && equal_at(hay, hay.size() - len, nd, exact);
        case op::equals:
        case op::in: return hay.size() == len && (len == 0 || equal_at(hay, 0, nd, exact));
        default: return false;
    }
}

}  // namespace

struct needle_index {
    // One needle of a 'contains': found by memchr of its rarest case-invariant byte (the anchor),
    // then compared whole. A case-insensitive needle of letters only has no anchor: scanned.
    struct entry {
        std::uint16_t needle = 0;
        bool exact = false;
        bool anchored = false;
        std::uint16_t anchor_at = 0;
        char anchor = 0;
    };
    const std::vector<needle>* needles = nullptr;  // the node's own needles (same lifetime)
    bool case_sensitive = false;
    std::vector<entry> entries;  // non-empty needles

    bool exact(const needle& nd) const { return case_sensitive || nd.exact; }

    static bool contains_one(std::string_view hay, const needle& nd, const entry& e) {
        const std::size_t len = nd.text.size();
        if (hay.size() < len) return false;
        if (!e.anchored) return match_one(op::contains, hay, nd, e.exact);
        const char* base = hay.data();
        const char* p = base + e.anchor_at;
        const char* end = base + (hay.size() - len) + e.anchor_at + 1;  // last anchor position + 1
        while (p < end) {
            const void* hit = std::memchr(p, e.anchor, static_cast<std::size_t>(end - p));
            if (hit == nullptr) return false;
            const char* at = static_cast<const char*>(hit);
            if (equal_at(hay, static_cast<std::size_t>(at - base) - e.anchor_at, nd, e.exact)) return true;
            p = at + 1;
        }
        return false;
    }

    bool matches(op oper, std::string_view hay) const {
        if (oper == op::contains) {
            for (const auto& e : entries)
                if (contains_one(hay, (*needles)[e.needle], e)) return true;
            return false;
        }
        for (const auto& nd : *needles)
            if (match_one(oper, hay, nd, exact(nd))) return true;
        return false;
    }
};

namespace {

// Rough rarity of a byte in mail text (lower = rarer): the anchor is the rarest byte of a needle.
int commonness(unsigned char c) {
    if (c == ' ') return 6;
    if (c >= 'a' && c <= 'z') return 5;
    if (c >= 'A' && c <= 'Z') return 4;
    if (c == '.' || c == ',' || c == '-' || c == '\r' || c == '\n') return 3;
    if (c >= '0' && c <= '9') return 2;
    return c < 0x80 ? 0 : 1;
}

std::shared_ptr<const needle_index> build_index(const std::vector<needle>& needles, bool case_sensitive) {
    if (needles.size() > 0xFFFF) return nullptr;  // bounded far below by the parser; plain loop otherwise
    auto index = std::make_shared<needle_index>();
    index->needles = &needles;
    index->case_sensitive = case_sensitive;
    for (std::size_t k = 0; k < needles.size(); ++k) {
        const needle& nd = needles[k];
        if (nd.text.empty()) continue;
        needle_index::entry e;
        e.needle = static_cast<std::uint16_t>(k);
        e.exact = case_sensitive || nd.exact;
        int best = 100;
        for (std::size_t at = 0; at < nd.text.size() && at <= 0xFFFF; ++at) {
            const auto c = static_cast<unsigned char>(nd.text[at]);
            const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
            if (!e.exact && letter) continue;  // not case-invariant
            if (commonness(c) < best) {
                best = commonness(c);
                e.anchored = true;
                e.anchor_at = static_cast<std::uint16_t>(at);
                e.anchor = nd.text[at];
            }
        }
        index->entries.push_back(e);
    }
    return index;
}

// ---------------------------------------------------------------------------------------------
// Parser

needle make_needle(std::string value, bool exact) {
    needle n;
    n.lower = text::lowercase(value);
    n.text = std::move(value);
    n.exact = exact;
    return n;
}

class parser {
public:
    parser(std::string_view text, const self_identity& self, expression& out)
        : tokens_(tokenize(text)), self_(self), out_(out) {}

    std::unique_ptr<node> parse() {
        auto root = parse_or(0);
        if (peek().kind != token_kind::end)
            fail(peek(), "expected 'and', 'or' or the end of the expression, found " + describe(peek()));
        return root;
    }

private:
    const token& peek() const { return tokens_[pos_]; }
    const token& next() { return tokens_[pos_ < tokens_.size() - 1 ? pos_++ : pos_]; }
    bool is_word(std::string_view word) const {
        return peek().kind == token_kind::identifier && peek().text == word;
    }
    [[noreturn]] void fail(const token& at, const std::string& message) const {
        throw expression_error(at.offset, message);
    }
    void guard(std::size_t depth) const {
        if (depth > max_nesting) fail(peek(), "expression nested too deeply (more than " + std::to_string(max_nesting) + " levels)");
    }
    void expect(token_kind kind, std::string_view what) {
        if (peek().kind != kind) fail(peek(), "expected " + std::string(what) + ", found " + describe(peek()));
        next();
    }

    std::unique_ptr<node> parse_or(std::size_t depth) {
        guard(depth);
        auto left = parse_and(depth + 1);
        while (is_word("or")) {
            auto combined = std::make_unique<node>();
            combined->kind = node::type::or_;
            combined->offset = next().offset;
            combined->children.push_back(std::move(left));
            combined->children.push_back(parse_and(depth + 1));
            left = std::move(combined);
        }
        return left;
    }

    std::unique_ptr<node> parse_and(std::size_t depth) {
        guard(depth);
        auto left = parse_unary(depth + 1);
        while (is_word("and")) {
            auto combined = std::make_unique<node>();
            combined->kind = node::type::and_;
            combined->offset = next().offset;
            combined->children.push_back(std::move(left));
            combined->children.push_back(parse_unary(depth + 1));
            left = std::move(combined);
        }
        return left;
    }

    std::unique_ptr<node> parse_unary(std::size_t depth) {
        guard(depth);
        if (is_word("not")) {
            auto negated = std::make_unique<node>();
            negated->kind = node::type::not_;
            negated->offset = next().offset;
            negated->children.push_back(parse_unary(depth + 1));
            return negated;
        }
        return parse_primary(depth + 1);
    }

    std::unique_ptr<node> parse_primary(std::size_t depth) {
        guard(depth);
        const token& t = peek();
        if (t.kind == token_kind::lparen) {
            next();
            auto inner = parse_or(depth + 1);
            expect(token_kind::rparen, "')'");
            return inner;
        }
        if (t.kind == token_kind::identifier && (t.text == "true" || t.text == "false")) {
            auto constant = std::make_unique<node>();
            constant->kind = node::type::literal;
            constant->literal = t.text == "true";
            constant->offset = next().offset;
            return constant;
        }
        if (t.kind != token_kind::identifier) {
            if (t.kind == token_kind::end) fail(t, "expected a condition, found the end of the expression");
            fail(t, "expected a field name, '(' or 'not', found " + describe(t));
        }
        return parse_condition();
    }

    std::unique_ptr<node> parse_condition() {
        const token& name = next();
        const field_info* field = find_field(name.text);
        if (field == nullptr) {
            if (name.text == "and" || name.text == "or") fail(name, "expected a condition before '" + name.text + "'");
            fail(name, "unknown field '" + name.text + "'");
        }
        auto cmp = std::make_unique<node>();
        cmp->offset = name.offset;
        cmp->field = field->id;
        out_.uses.push_back({std::string(field->name), field->from, name.offset});
        if (field->arg != 0) {
            if (peek().kind != token_kind::lparen)
                fail(peek(), "field '" + std::string(field->name) + "' needs an argument: " + std::string(field->name) +
                                 (field->arg == 's' ? "(\"Name\")" : "(20)"));
            next();
            const token& arg = next();
            if (field->arg == 's') {
                if (arg.kind != token_kind::string) fail(arg, "expected a header name in quotes, found " + describe(arg));
                if (arg.text.empty() || arg.text.size() > 256) fail(arg, "bad header name");
                cmp->field_arg = arg.text;
            } else {
                if (arg.kind != token_kind::integer) fail(arg, "expected a number of lines, found " + describe(arg));
                if (arg.number < 1 || arg.number > max_body_tail_lines)
                    fail(arg, "number of lines must be from 1 to " + std::to_string(max_body_tail_lines));
                cmp->field_n = static_cast<int>(arg.number);
            }
            expect(token_kind::rparen, "')'");
        } else if (peek().kind == token_kind::lparen) {
            fail(peek(), "field '" + std::string(field->name) + "' takes no argument");
        }

        if (field->type == field_type::boolean) {
            cmp->kind = node::type::flag;
            return cmp;
        }
        cmp->kind = node::type::compare;
        const token& oper = next();
        if (field->type == field_type::number) {
            parse_number_operator(*cmp, oper, *field);
            return cmp;
        }
        parse_text_operator(*cmp, oper, *field);
        return cmp;
    }

    void parse_number_operator(node& cmp, const token& oper, const field_info& field) {
        if (oper.kind == token_kind::symbol) {
            static const std::pair<std::string_view, op> symbols[] = {{"==", op::eq}, {"!=", op::ne}, {"<", op::lt},
                                                                      {"<=", op::le}, {">", op::gt}, {">=", op::ge}};
            for (auto [s, o] : symbols)
                if (oper.text == s) cmp.oper = o;
        } else if (oper.kind == token_kind::identifier && oper.text == "equals") {
            cmp.oper = op::eq;
        } else {
            fail(oper, "field '" + std::string(field.name) + "' is a number: expected ==, !=, <, <=, > or >=, found " + describe(oper));
        }
        const token& value = next();
        if (value.kind != token_kind::integer) fail(value, "expected a number, found " + describe(value));
        cmp.number = value.number;
    }

    void parse_text_operator(node& cmp, const token& oper, const field_info& field) {
        const std::string subject = "field '" + std::string(field.name) + "'";
        if (oper.kind != token_kind::identifier) {
            if (oper.kind == token_kind::end) fail(oper, "expected an operator after " + subject + " (contains, equals, startswith, endswith, matches, in)");
            if (oper.kind == token_kind::symbol && oper.text == "==")
                fail(oper, subject + " is text: use 'equals' instead of '=='");
            fail(oper, "expected an operator after " + subject + ", found " + describe(oper));
        }
        std::string word = oper.text;
        if (word.size() > 3 && word.compare(word.size() - 3, 3, "_cs") == 0) {
            cmp.case_sensitive = true;
            word.resize(word.size() - 3);
            if (word != "contains" && word != "equals" && word != "startswith" && word != "endswith")
                fail(oper, "unknown operator '" + oper.text + "'");
        }
        if (word == "icontains" || word == "iequals" || word == "istartswith" || word == "iendswith") word = word.substr(1);
        if (word == "contains") cmp.oper = op::contains;
        else if (word == "equals") cmp.oper = op::equals;
        else if (word == "startswith") cmp.oper = op::startswith;
        else if (word == "endswith") cmp.oper = op::endswith;
        else if (word == "matches") cmp.oper = op::matches;
        else if (word == "in") cmp.oper = op::in;
        else fail(oper, "unknown operator '" + oper.text + "' (contains, equals, startswith, endswith, matches, in)");

        const token& start = peek();
        std::vector<std::pair<needle, std::size_t>> constants;
        parse_value(cmp, constants, false, 0);
        if (cmp.oper == op::matches) {
            if (!cmp.dynamic.empty() || constants.empty()) fail(start, "'matches' needs literal patterns in quotes");
            for (auto& [n, offset] : constants) {
                if (n.text.size() > max_pattern_bytes)
                    throw expression_error(offset, "pattern longer than " + std::to_string(max_pattern_bytes) + " bytes");
                RE2::Options options;
                options.set_log_errors(false);
                options.set_max_mem(8 << 20);
                auto re = std::make_shared<RE2>(n.text, options);
                if (!re->ok()) throw expression_error(offset, "bad regular expression: " + re->error());
                cmp.regexes.push_back(std::move(re));
            }
            return;
        }
        if (cmp.oper == op::in && field.type == field_type::ip) {
            for (auto& [n, offset] : constants) {
                cidr net;
                if (!parse_cidr(n.text, net)) throw expression_error(offset, "invalid address or CIDR network \"" + n.text + "\"");
                cmp.cidrs.push_back(net);
            }
        }
        for (auto& [n, offset] : constants) cmp.needles.push_back(std::move(n));
        if (!cmp.needles.empty()) cmp.index = build_index(cmp.needles, cmp.case_sensitive);
    }

    // value := STRING | INT | $ref | encoded(value) | any(list) | any-of list | list
    void parse_value(node& cmp, std::vector<std::pair<needle, std::size_t>>& out, bool encode, std::size_t depth) {
        if (depth > 8) fail(peek(), "value nested too deeply");
        const token& t = next();
        auto add = [&](std::string text, std::size_t offset) {
            if (out.size() >= max_list_items * 16) throw expression_error(offset, "too many values");
            if (!encode) {
                out.push_back({make_needle(std::move(text), false), offset});
                return;
            }
            for (auto& form : encodings(text)) out.push_back({make_needle(std::move(form.text), form.exact), offset});
        };
        switch (t.kind) {
            case token_kind::string: add(t.text, t.offset); return;
            case token_kind::integer: add(t.text, t.offset); return;
            case token_kind::reference: parse_reference(cmp, t, encode, add); return;
            case token_kind::lbracket: parse_list(cmp, out, encode, depth); return;
            case token_kind::identifier:
                if (t.text == "encoded") {
                    expect(token_kind::lparen, "'(' after 'encoded'");
                    parse_value(cmp, out, true, depth + 1);
                    expect(token_kind::rparen, "')'");
                    return;
                }
                if (t.text == "any") {
                    expect(token_kind::lparen, "'(' after 'any'");
                    parse_value(cmp, out, encode, depth + 1);
                    expect(token_kind::rparen, "')'");
                    return;
                }
                if (t.text == "any-of") {
                    if (peek().kind != token_kind::lbracket) fail(peek(), "expected '[' after 'any-of'");
                    parse_value(cmp, out, encode, depth + 1);
                    return;
                }
                fail(t, "expected a value (a string, a number, a list, $name, encoded(...)), found " + describe(t));
            default:
                fail(t, "expected a value (a string, a number, a list, $name, encoded(...)), found " + describe(t));
        }
    }

    void parse_list(node& cmp, std::vector<std::pair<needle, std::size_t>>& out, bool encode, std::size_t depth) {
        std::size_t items = 0;
        while (peek().kind != token_kind::rbracket) {
            if (++items > max_list_items) fail(peek(), "list longer than " + std::to_string(max_list_items) + " items");
            if (peek().kind == token_kind::lbracket) fail(peek(), "lists cannot be nested");
            parse_value(cmp, out, encode, depth + 1);
            if (peek().kind == token_kind::comma) {
                next();
                continue;
            }
            if (peek().kind != token_kind::rbracket) fail(peek(), "expected ',' or ']' in list, found " + describe(peek()));
        }
        next();
    }

    template <class Add>
    void parse_reference(node& cmp, const token& t, bool encode, Add& add) {
        if (t.text.rfind("self.", 0) == 0) {
            const std::string what = t.text.substr(5);
            std::vector<std::string> values;
            if (what == "ipv4" || what == "ip") values.insert(values.end(), self_.ipv4.begin(), self_.ipv4.end());
            if (what == "ipv6" || what == "ip") values.insert(values.end(), self_.ipv6.begin(), self_.ipv6.end());
            if (what == "hostname" && !self_.hostname.empty()) values.push_back(self_.hostname);
            if (what == "ports")
                for (auto port : self_.ports) values.push_back(std::to_string(port));
            if (what != "ipv4" && what != "ipv6" && what != "ip" && what != "hostname" && what != "ports")
                fail(t, "unknown value '$" + t.text + "' (known: $self.ipv4, $self.ipv6, $self.ip, $self.hostname, $self.ports)");
            out_.uses.push_back({"$" + t.text, hook_point::connect, t.offset, values.empty()});
            for (auto& v : values) add(v, t.offset);
            return;
        }
        const field_info* field = find_field(t.text);
        if (field == nullptr) fail(t, "unknown value '$" + t.text + "'");
        if (field->type == field_type::boolean || field->type == field_type::number || field->arg != 0 ||
            field->id == field_id::body || field->id == field_id::html || field->id == field_id::headers)
            fail(t, "'$" + t.text + "' cannot be used as a value");
        out_.uses.push_back({"$" + t.text, field->from, t.offset});
        cmp.dynamic.push_back({field->id, encode});
    }

    std::vector<token> tokens_;
    std::size_t pos_ = 0;
    const self_identity& self_;
    expression& out_;
};

// ---------------------------------------------------------------------------------------------
// Evaluation

struct values {
    std::vector<std::string> owned;
    std::vector<std::string_view> views;
    bool available = false;
};

std::string_view domain_of(std::string_view address) {
    const auto at = address.rfind('@');
    if (at == std::string_view::npos) return {};
    address = address.substr(at + 1);
    while (!address.empty() && (address.back() == '>' || address.back() == ' ')) address.remove_suffix(1);
    return address;
}

std::string_view tail_lines(std::string_view body, int lines) {
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r' || body.back() == ' ')) body.remove_suffix(1);
    std::size_t pos = body.size();
    for (int seen = 0; pos > 0; --pos) {
        if (body[pos - 1] == '\n' && ++seen == lines) break;
    }
    return body.substr(pos);
}

bool available(field_id id, const context& ctx) {
    const field_info& f = info(id);
    if (static_cast<int>(ctx.hook) < static_cast<int>(f.from)) return false;
    if (f.from == hook_point::data && id != field_id::size && ctx.message == nullptr) return false;
    if ((id == field_id::auth_user || id == field_id::auth_password) && ctx.auth_user.empty() && ctx.auth_password.empty())
        return false;
    return true;
}

values fetch(field_id id, const node* cmp, const context& ctx) {
    values v;
    if (!available(id, ctx)) return v;
    v.available = true;
    const mime::parsed_message* m = ctx.message;
    auto one = [&](std::string_view s) { v.views.push_back(s); };
    switch (id) {
        case field_id::client_ip: one(ctx.client_ip); break;
        case field_id::listener: one(ctx.listener); break;
        case field_id::tls_version: one(ctx.tls_version); break;
        case field_id::helo: one(ctx.helo); break;
        case field_id::auth_user: one(ctx.auth_user); break;
        case field_id::auth_password: one(ctx.auth_password); break;
        case field_id::mail_from: one(ctx.mail_from); break;
        case field_id::mail_from_domain: v.owned.push_back(text::lowercase(domain_of(ctx.mail_from))); break;
        case field_id::rcpt_to:
            for (const auto& r : ctx.rcpt_to) one(r);
            break;
        case field_id::rcpt_domain:
            for (const auto& r : ctx.rcpt_to) v.owned.push_back(text::lowercase(domain_of(r)));
            break;
        case field_id::header:
            v.views = m->header_values(cmp != nullptr ? std::string_view(cmp->field_arg) : std::string_view());
            break;
        case field_id::headers:
            for (const auto& h : m->headers) one(h.value);
            break;
        case field_id::header_names:
            for (const auto& h : m->headers) one(h.name);
            break;
        case field_id::subject: one(m->subject); break;
        case field_id::from: one(m->from); break;
        case field_id::to: one(m->to); break;
        case field_id::body: one(m->text_body); break;
        case field_id::html: one(m->html_body); break;
        case field_id::body_tail:
            one(tail_lines(m->text_body.empty() ? std::string_view(m->html_body) : std::string_view(m->text_body),
                           cmp != nullptr ? cmp->field_n : 20));
            break;
        case field_id::attachment_names:
            for (const auto& a : m->attachments) one(a.filename);
            break;
        case field_id::attachment_types:
            for (const auto& a : m->attachments) one(a.content_type);
            break;
        case field_id::attachment_sha256:
            for (const auto& a : m->attachments) one(a.sha256);
            break;
        default: break;
    }
    for (const auto& s : v.owned) v.views.push_back(s);
    return v;
}

std::int64_t number_of(field_id id, const context& ctx) {
    switch (id) {
        case field_id::rcpt_count: return static_cast<std::int64_t>(ctx.rcpt_to.size());
        case field_id::header_count: return static_cast<std::int64_t>(ctx.message->headers.size());
        case field_id::attachment_count: return static_cast<std::int64_t>(ctx.message->attachments.size());
        case field_id::size: return static_cast<std::int64_t>(std::min<std::uint64_t>(ctx.size, INT64_MAX));
        default: return 0;
    }
}

std::atomic<std::uint64_t> left_out_count{0};

// The needles of n's $name values in ctx, within max_dynamic_needles / max_dynamic_needle_bytes:
// whole values in field order, each with all its forms, until the next would not fit.
std::vector<needle> session_needles(const node& n, const context& ctx) {
    std::vector<needle> out;
    std::size_t bytes = 0;
    const bool substring = n.oper == op::contains || n.oper == op::startswith || n.oper == op::endswith;
    for (const auto& d : n.dynamic) {
        const values source = fetch(d.field, nullptr, ctx);
        for (auto s : source.views) {
            if (s.empty() || (substring && s.size() < min_dynamic_needle) || s.size() > max_dynamic_value_bytes) continue;
            std::vector<encoded_form> forms;
            if (d.encode) forms = encodings(s);
            else forms.push_back({std::string(s), false, "plain"});
            std::size_t form_bytes = 0;
            for (const auto& form : forms) form_bytes += form.text.size();
            if (out.size() + forms.size() > max_dynamic_needles || bytes + form_bytes > max_dynamic_needle_bytes) {
                left_out_count.fetch_add(1, std::memory_order_relaxed);
                return out;
            }
            bytes += form_bytes;
            for (auto& form : forms) out.push_back(make_needle(std::move(form.text), form.exact));
        }
    }
    return out;
}

bool compare(const node& n, const context& ctx) {
    const field_info& f = info(n.field);
    if (!available(n.field, ctx)) return false;
    if (f.type == field_type::number) {
        const std::int64_t x = number_of(n.field, ctx);
        switch (n.oper) {
            case op::eq: return x == n.number;
            case op::ne: return x != n.number;
            case op::lt: return x < n.number;
            case op::le: return x <= n.number;
            case op::gt: return x > n.number;
            case op::ge: return x >= n.number;
            default: return false;
        }
    }
    const values hay = fetch(n.field, &n, ctx);
    if (hay.views.empty()) return false;

    if (n.oper == op::matches) {
        for (auto h : hay.views) {
            if (h.size() > max_regex_input) h = h.substr(0, max_regex_input);
            for (const auto& re : n.regexes)
                if (RE2::PartialMatch(re2::StringPiece(h.data(), h.size()), *re)) return true;
        }
        return false;
    }

    // Needles: the compiled constants plus the session values referenced with $name.
    const std::vector<needle> dynamic = session_needles(n, ctx);

    if (n.oper == op::in && f.type == field_type::ip) {
        for (auto h : hay.views) {
            cidr ip;
            if (!parse_ip(h, ip)) continue;
            for (const auto& net : n.cidrs)
                if (cidr_contains(net, ip)) return true;
            for (const auto& d : dynamic) {
                cidr net;
                if (parse_cidr(d.text, net) && cidr_contains(net, ip)) return true;
            }
        }
        return false;
    }

    // 'contains' looks for all the session needles in one pass per value (there may be
    // thousands); the other operators compare at one place, a needle's length at most.
    needle_automaton folded_dynamic, exact_dynamic;
    if (n.oper == op::contains && !dynamic.empty()) {
        std::vector<std::string_view> folded, exact;
        for (const auto& nd : dynamic) (n.case_sensitive || nd.exact ? exact : folded).push_back(nd.text);
        folded_dynamic = needle_automaton(folded, true);
        exact_dynamic = needle_automaton(exact, false);
    }
    for (auto h : hay.views) {
        if (n.index) {
            if (n.index->matches(n.oper, h)) return true;
        } else {
            for (const auto& nd : n.needles)
                if (match_one(n.oper, h, nd, n.case_sensitive || nd.exact)) return true;
        }
        if (n.oper == op::contains) {
            if (folded_dynamic.found_in(h) || exact_dynamic.found_in(h)) return true;
            continue;
        }
        for (const auto& nd : dynamic)
            if (match_one(n.oper, h, nd, n.case_sensitive || nd.exact)) return true;
    }
    return false;
}

bool eval(const node& n, const context& ctx) {
    switch (n.kind) {
        case node::type::and_: return eval(*n.children[0], ctx) && eval(*n.children[1], ctx);
        case node::type::or_: return eval(*n.children[0], ctx) || eval(*n.children[1], ctx);
        case node::type::not_: return !eval(*n.children[0], ctx);
        case node::type::literal: return n.literal;
        case node::type::flag:
            if (!available(n.field, ctx)) return false;
            if (n.field == field_id::tls) return ctx.tls;
            if (n.field == field_id::authenticated) return !ctx.auth_user.empty() || !ctx.auth_password.empty();
            return false;
        case node::type::compare: return compare(n, ctx);
    }
    return false;
}

}  // namespace

std::shared_ptr<const expression> compile(std::string_view text, const self_identity& self) {
    auto expr = std::make_shared<expression>();
    parser p(text, self, *expr);
    expr->root = p.parse();
    return expr;
}

bool evaluate(const expression& expr, const context& ctx) { return expr.root && eval(*expr.root, ctx); }

std::uint64_t dynamic_values_left_out() { return left_out_count.load(std::memory_order_relaxed); }

}  // namespace relaybait::rules
