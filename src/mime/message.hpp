// A received message parsed into what the rule engine (and later threat intel) needs: decoded
// headers, subject, text and HTML bodies and attachments with their hashes. Built on GMime 3,
// but no GMime type appears here. Everything is bounded by `limits`; garbage never throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace relaybait::mime {

struct limits {
    std::size_t max_parts = 256;                      // MIME parts walked (all levels)
    std::size_t max_depth = 16;                       // multipart / message nesting
    std::size_t max_headers = 512;                    // top-level headers kept
    std::size_t max_header_length = 16 * 1024;        // bytes of one decoded header value
    std::size_t max_text_bytes = 4 * 1024 * 1024;     // text body (all text/plain parts)
    std::size_t max_html_bytes = 4 * 1024 * 1024;     // HTML body (all text/html parts)
    std::size_t max_decoded_bytes = 64 * 1024 * 1024; // all decoded content together
    std::size_t max_attachments = 128;
};

struct header {
    std::string name;   // as written (case preserved)
    std::string value;  // unfolded, every RFC 2047 encoded-word decoded, UTF-8
};

struct attachment {
    std::string filename;      // decoded (RFC 2047 / RFC 2231), may be empty
    std::string content_type;  // lower case "type/subtype"
    std::uint64_t size = 0;    // decoded bytes (counted even beyond the hashing limit)
    std::string sha256;        // lower-case hex of the decoded content
    std::string sha1;
    std::string md5;
    bool truncated = false;    // content was cut by max_decoded_bytes: hashes cover the prefix
};

struct parsed_message {
    std::vector<header> headers;  // top-level headers, in order
    std::string subject;
    std::string from;
    std::string to;
    std::string text_body;  // text/plain parts, decoded to UTF-8, joined by "\n"
    std::string html_body;  // text/html parts, decoded to UTF-8, joined by "\n"
    std::vector<attachment> attachments;
    std::size_t part_count = 0;
    bool truncated = false;  // a limit was hit somewhere
    bool parse_failed = false;  // GMime could not parse anything: only a raw fallback was done

    // Value of the first header with this name (case-insensitive), or nullptr.
    const std::string* find_header(std::string_view name) const;
    // Every header value with this name (case-insensitive), in order.
    std::vector<std::string_view> header_values(std::string_view name) const;
};

// Parses a raw RFC 5322 message (CRLF or LF line ends). Never throws on bad input.
// Simple messages (printable ASCII, one text/plain body, no transfer encoding) are parsed
// without GMime, with the same result; everything else goes through parse_with_gmime.
parsed_message parse(std::string_view raw, const limits& bounds = {});
// Always GMime (the tests compare both paths).
parsed_message parse_with_gmime(std::string_view raw, const limits& bounds = {});

// Decodes every RFC 2047 encoded-word of a header value into UTF-8 (8-bit bytes that are not
// UTF-8 are taken as Latin-1). Exposed for tests and other users.
std::string decode_header_value(std::string_view value);

}  // namespace relaybait::mime
