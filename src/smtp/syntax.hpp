#pragma once
// Pure syntax helpers of the SMTP engine, modelled on Postfix smtpd (smtpd_token.c, extract_addr(),
// is_header(), valid_hostname()) and Cyrus SASL (base64). Exposed for unit tests and the fuzzer.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/text.hpp"

namespace relaybait::smtp::syntax {

// Shared with the other components (common/text.hpp).
using text::base64_encode;
using text::iequals;
using text::lowercase;

// One word of a command line as Postfix smtpd_token() splits it: whitespace separates words,
// <...>, "..." and [...] keep their whitespace, and "FROM:"/"TO:" end a word.
struct token {
    std::string text;
    bool address = false;  // began with '<'
    bool error = false;    // unterminated quote or bracket
};
std::vector<token> tokenize(std::string_view line);

bool valid_utf8(std::string_view bytes);

// Postfix is_header(): printable non-colon characters, optional blanks, then ':'. Returns the
// label length, or 0 when the word does not look like a header label.
std::size_t is_header(std::string_view word);

bool valid_hostname(std::string_view name, bool allow_utf8);
bool valid_address_literal(std::string_view literal);  // [1.2.3.4], [IPv6:...]

// An envelope address out of the <...> token: source route removed, quotes kept.
struct address_result {
    bool ok = false;
    std::string address;
};
address_result extract_address(const token& tok, bool allow_empty, bool smtputf8);

std::optional<std::string> base64_decode(std::string_view text);  // strict, as Cyrus sasl_decode64

// Cyrus sasl_decode64() verdicts: complete groups of 4 are decoded (a bad character is
// SASL_BADPROT), and input that ends in a partial group is SASL_CONTINUE ("another step").
enum class sasl_base64 { ok, bad_protocol, incomplete };
sasl_base64 sasl_decode64(std::string_view text, std::string& out);

// Postfix's internal form of an address (what its reject texts show): quotes and backslash
// escapes removed, so <"root"@host> is root@host and <"a@b"> is a@b.
std::string internalize(std::string_view address);
std::optional<std::string> xtext_decode(std::string_view text);  // RFC 3461

bool all_digits(std::string_view text);  // Postfix alldig(): false for ""
bool all_ascii(std::string_view text);

std::string hmac_md5_hex(std::string_view key, std::string_view message);  // CRAM-MD5

}  // namespace relaybait::smtp::syntax
