// The condition language (docs/rules.md): tokenizer, recursive-descent parser producing an AST
// whose values are resolved at compile time where possible, and the evaluator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "rules/rules.hpp"

namespace re2 {
class RE2;
}

namespace relaybait::rules {

// Hard bounds of the language (everything from a rules file is bounded too).
inline constexpr std::size_t max_expression_bytes = 16 * 1024;
inline constexpr std::size_t max_nesting = 64;
inline constexpr std::size_t max_list_items = 1024;
inline constexpr std::size_t max_pattern_bytes = 4096;
inline constexpr std::size_t max_regex_input = 1024 * 1024;  // bytes of one value a regex scans
inline constexpr std::size_t min_dynamic_needle = 4;  // $auth.password "a" must not match everything
// The needles one comparison takes from the session ($rcpt_to, encoded($mail_from), ...) are
// the attacker's: 1,000 recipients x ten encodings against a 4 MiB body. `contains` scans a
// value once for all of them (needle_automaton.hpp); these bound the needles themselves (the
// automaton's build time and memory, and the other operators' needles x values). A longer
// session value is not used at all; past the totals, the first values (field order) are kept,
// each with all its encoded forms, and the rest are left out (counted, see below).
inline constexpr std::size_t max_dynamic_value_bytes = 4096;
inline constexpr std::size_t max_dynamic_needles = 16 * 1024;          // per comparison
inline constexpr std::size_t max_dynamic_needle_bytes = 512 * 1024;   // per comparison, all forms
inline constexpr int max_body_tail_lines = 10000;

// A problem in an expression, at a byte offset of its text.
class expression_error : public std::runtime_error {
public:
    expression_error(std::size_t offset, const std::string& message)
        : std::runtime_error(message), offset_(offset) {}
    std::size_t offset() const noexcept { return offset_; }

private:
    std::size_t offset_;
};

// 1-based line and column (in characters) of a byte offset of `text`.
struct text_position {
    std::size_t line = 1;
    std::size_t column = 1;
};
text_position position_of(std::string_view text, std::size_t offset);

enum class token_kind { identifier, reference, string, integer, lparen, rparen, lbracket, rbracket, comma, symbol, end };
struct token {
    token_kind kind;
    std::string text;  // identifier/reference name, decoded string, integer digits, symbol
    std::size_t offset;
    std::int64_t number = 0;
};
std::vector<token> tokenize(std::string_view text);  // throws expression_error

enum class field_id {
    client_ip, listener, tls, tls_version, helo, auth_user, auth_password, authenticated,
    mail_from, mail_from_domain, rcpt_to, rcpt_domain, rcpt_count,
    header, headers, header_names, header_count, subject, from, to, body, html, body_tail,
    attachment_names, attachment_types, attachment_sha256, attachment_count, size,
};
enum class field_type { text, number, boolean, ip };

struct field_info {
    std::string_view name;
    field_id id;
    field_type type;
    hook_point from;  // first hook at which the field is known
    bool multi;       // several values: a comparison is true when any value matches
    char arg;         // 0 none, 's' string, 'n' integer
};
const field_info* find_field(std::string_view name);
const field_info& info(field_id id);
const std::vector<field_info>& all_fields();

enum class op { contains, equals, startswith, endswith, matches, in, eq, ne, lt, le, gt, ge };

struct needle {
    std::string text;
    std::string lower;  // ASCII lower case of text
    bool exact = false;  // always case-sensitive (base64 forms)
};
struct needle_index;  // the needles of one comparison, indexed for a single pass over a value (expr.cpp)
struct dynamic_value {
    field_id field;
    bool encode = false;
};
struct cidr {
    int family = 0;  // 4 or 6
    unsigned char address[16] = {};
    int prefix = 0;
};
bool parse_cidr(std::string_view text, cidr& out);
bool parse_ip(std::string_view text, cidr& out);  // prefix = full length; v4-mapped v6 -> v4

struct node {
    enum class type { and_, or_, not_, literal, compare, flag } kind = type::literal;
    std::size_t offset = 0;
    std::vector<std::unique_ptr<node>> children;
    bool literal = false;
    // compare / flag
    field_id field = field_id::subject;
    std::string field_arg;  // header name
    int field_n = 0;        // body_tail lines
    op oper = op::contains;
    bool case_sensitive = false;
    std::vector<needle> needles;
    std::shared_ptr<const needle_index> index;  // built from `needles` when compiled
    std::vector<dynamic_value> dynamic;
    std::vector<std::shared_ptr<const re2::RE2>> regexes;
    std::vector<cidr> cidrs;
    std::int64_t number = 0;
};

struct field_use {
    std::string name;  // as written ("subject", "$auth.password", "$self.ipv4")
    hook_point from;
    std::size_t offset;
    bool empty_self = false;  // a $self value with nothing configured
};

struct expression {
    std::unique_ptr<node> root;
    std::vector<field_use> uses;
};

// Parses and compiles a condition; $self values are resolved from `self`. Throws expression_error.
std::shared_ptr<const expression> compile(std::string_view text, const self_identity& self);
bool evaluate(const expression& expr, const context& ctx);
// Comparisons since start that left session values out at max_dynamic_needles or
// max_dynamic_needle_bytes. The engine has no log of its own (it is pure); a caller may report it.
std::uint64_t dynamic_values_left_out();

}  // namespace relaybait::rules
