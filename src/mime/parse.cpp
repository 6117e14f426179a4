// GMime 3 behind mime::parse. GMime objects are GObjects: every one we own is released by an
// RAII holder; nothing GMime-specific leaves this file.
#include <gmime/gmime.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <optional>

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <memory>
#include <mutex>

#include "common/text.hpp"
#include "mime/message.hpp"

namespace relaybait::mime {
namespace {

void init_gmime() {
    static std::once_flag once;
    std::call_once(once, [] { g_mime_init(); });
}

struct gobject_deleter {
    void operator()(gpointer object) const {
        if (object != nullptr) g_object_unref(object);
    }
};
template <class T>
using gptr = std::unique_ptr<T, gobject_deleter>;

struct gfree_deleter {
    void operator()(void* p) const { g_free(p); }
};
using gstring = std::unique_ptr<char, gfree_deleter>;

struct options_deleter {
    void operator()(GMimeParserOptions* options) const { g_mime_parser_options_free(options); }
};

// Lenient options: spammers do not follow RFC 2047 (encoded-words glued to text, in quotes...).
std::unique_ptr<GMimeParserOptions, options_deleter> make_options() {
    GMimeParserOptions* options = g_mime_parser_options_new();
    g_mime_parser_options_set_rfc2047_compliance_mode(options, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_address_compliance_mode(options, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_parameter_compliance_mode(options, GMIME_RFC_COMPLIANCE_LOOSE);
    static const char* fallback[] = {"utf-8", "windows-1252", nullptr};
    g_mime_parser_options_set_fallback_charsets(options, fallback);
    return std::unique_ptr<GMimeParserOptions, options_deleter>(options);
}

using text::iequals;
using text::istarts_with;

// True when every byte is printable ASCII, tab, CR or LF (16 bytes at a time with SSE2).
bool is_plain_ascii(std::string_view text) {
    std::size_t i = 0;
#ifdef __SSE2__
    const __m128i space = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f);
    const __m128i tab = _mm_set1_epi8('\t'), cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    for (; i + 16 <= text.size(); i += 16) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(text.data() + i));
        // signed compare: bytes >= 0x80 are negative, so "< 0x20" catches them too
        const __m128i odd = _mm_or_si128(_mm_cmplt_epi8(x, space), _mm_cmpeq_epi8(x, del));
        if (_mm_movemask_epi8(odd) == 0) continue;
        const __m128i allowed = _mm_or_si128(_mm_cmpeq_epi8(x, tab), _mm_or_si128(_mm_cmpeq_epi8(x, cr), _mm_cmpeq_epi8(x, lf)));
        if (_mm_movemask_epi8(_mm_andnot_si128(allowed, odd)) != 0) return false;
    }
#endif
    for (; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x7f || (c < 0x20 && c != '\t' && c != '\r' && c != '\n')) return false;
    }
    return true;
}

bool is_ascii(std::string_view text) {
    std::size_t i = 0;
    for (; i + 8 <= text.size(); i += 8) {
        std::uint64_t word;
        std::memcpy(&word, text.data() + i, 8);
        if (word & 0x8080808080808080ull) return false;
    }
    for (; i < text.size(); ++i)
        if (static_cast<unsigned char>(text[i]) >= 0x80) return false;
    return true;
}

bool valid_utf8(std::string_view text) {
    return is_ascii(text) || g_utf8_validate(text.data(), static_cast<gssize>(text.size()), nullptr);
}

// Replaces invalid UTF-8 with U+FFFD.
std::string make_valid_utf8(std::string_view text) {
    if (valid_utf8(text)) return std::string(text);
    gstring valid(g_utf8_make_valid(text.data(), static_cast<gssize>(text.size())));
    return valid ? std::string(valid.get()) : std::string();
}

// Cuts at most `max` bytes without splitting a UTF-8 sequence.
void truncate_utf8(std::string& text, std::size_t max) {
    if (text.size() <= max) return;
    std::size_t cut = max;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text.resize(cut);
}

std::string unfold(std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    for (char c : raw)
        if (c != '\r' && c != '\n') out += c;
    return out;
}

std::string trim(std::string text) {
    const auto not_space = [](unsigned char c) { return c != ' ' && c != '\t'; };
    auto begin = std::find_if(text.begin(), text.end(), not_space);
    auto end = std::find_if(text.rbegin(), text.rend(), not_space).base();
    if (begin >= end) return {};
    return std::string(begin, end);
}

// Text GMime's RFC 2047 decoder gives back unchanged: printable ASCII (and tabs) without any
// encoded-word opener. Checked against GMime by the unit tests (MimeParse.FastPathMatchesGMime).
bool decodes_to_itself(std::string_view unfolded) {
    return unfolded.find("=?") == std::string_view::npos && is_plain_ascii(unfolded);
}

std::string decode_with(GMimeParserOptions* options, std::string_view value) {
    std::string unfolded = unfold(value);  // also ends the text at any NUL below
    if (decodes_to_itself(unfolded)) return unfolded;
    std::unique_ptr<GMimeParserOptions, options_deleter> own;
    if (options == nullptr) {
        init_gmime();
        own = make_options();
        options = own.get();
    }
    gstring decoded(g_mime_utils_header_decode_text(options, unfolded.c_str()));
    if (!decoded) return make_valid_utf8(unfolded);
    return make_valid_utf8(decoded.get());
}

// Text of a part converted from its declared charset to UTF-8 (Latin-1 when unknown/invalid).
std::string to_utf8(std::string_view bytes, const char* charset) {
    if (bytes.empty()) return {};
    std::string name = charset != nullptr ? charset : "";
    const bool utf8_like = name.empty() || iequals(name, "utf-8") || iequals(name, "utf8") ||
                           iequals(name, "us-ascii") || iequals(name, "ascii");
    const bool valid = valid_utf8(bytes);
    if (valid && utf8_like) return std::string(bytes);
    if (utf8_like && !name.empty()) return make_valid_utf8(bytes);  // declared UTF-8 but broken
    if (name.empty()) name = "windows-1252";                        // undeclared 8-bit text
    const char* iconv_name = g_mime_charset_iconv_name(name.c_str());
    gsize written = 0;
    GError* error = nullptr;
    gstring converted(g_convert(bytes.data(), static_cast<gssize>(bytes.size()), "UTF-8",
                                iconv_name != nullptr ? iconv_name : name.c_str(), nullptr, &written, &error));
    if (error != nullptr) g_error_free(error);
    if (converted) return make_valid_utf8(std::string_view(converted.get(), written));
    if (valid) return std::string(bytes);
    gsize written2 = 0;
    gstring latin(g_convert(bytes.data(), static_cast<gssize>(bytes.size()), "UTF-8", "ISO-8859-1", nullptr,
                            &written2, nullptr));
    if (latin) return std::string(latin.get(), written2);
    return make_valid_utf8(bytes);
}

std::string checksum(GChecksumType type, std::string_view data) {
    GChecksum* sum = g_checksum_new(type);
    g_checksum_update(sum, reinterpret_cast<const guchar*>(data.data()), static_cast<gssize>(data.size()));
    std::string hex = g_checksum_get_string(sum);
    g_checksum_free(sum);
    return hex;
}

void append_bounded(std::string& body, std::string_view text, std::size_t max, bool& truncated) {
    if (!body.empty() && body.size() < max) body += '\n';
    if (body.size() + text.size() > max) {
        truncated = true;
        body.append(text.substr(0, max > body.size() ? max - body.size() : 0));
        truncate_utf8(body, max);
        return;
    }
    body.append(text);
}

class walker {
public:
    walker(parsed_message& out, const limits& bounds) : out_(out), bounds_(bounds) {}

    void walk(GMimeObject* object, std::size_t depth) {
        if (object == nullptr) return;
        if (depth > bounds_.max_depth || out_.part_count >= bounds_.max_parts) {
            out_.truncated = true;
            return;
        }
        ++out_.part_count;
        if (GMIME_IS_MULTIPART(object)) {
            GMimeMultipart* multipart = GMIME_MULTIPART(object);
            const int count = g_mime_multipart_get_count(multipart);
            for (int i = 0; i < count; ++i) walk(g_mime_multipart_get_part(multipart, i), depth + 1);
        } else if (GMIME_IS_MESSAGE_PART(object)) {
            GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(object));
            if (inner != nullptr) walk(g_mime_message_get_mime_part(inner), depth + 1);
        } else if (GMIME_IS_PART(object)) {
            leaf(GMIME_PART(object));
        }
    }

private:
    // Decoded content of a part, at most the remaining decoded-bytes budget.
    std::string content(GMimePart* part, bool& truncated) {
        GMimeDataWrapper* wrapper = g_mime_part_get_content(part);
        if (wrapper == nullptr) return {};
        gptr<GMimeStream> stream(g_mime_stream_mem_new());
        if (g_mime_data_wrapper_write_to_stream(wrapper, stream.get()) < 0) return {};
        GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(stream.get()));
        if (bytes == nullptr) return {};
        std::size_t size = bytes->len;
        last_size_ = size;
        const std::size_t budget = bounds_.max_decoded_bytes > decoded_ ? bounds_.max_decoded_bytes - decoded_ : 0;
        if (size > budget) {
            truncated = true;
            out_.truncated = true;
            size = budget;
        }
        decoded_ += size;
        return std::string(reinterpret_cast<const char*>(bytes->data), size);
    }

    void leaf(GMimePart* part) {
        GMimeObject* object = GMIME_OBJECT(part);
        GMimeContentType* type = g_mime_object_get_content_type(object);
        std::string mime_type = "text/plain";
        if (type != nullptr) {
            gstring name(g_mime_content_type_get_mime_type(type));
            if (name) mime_type = text::lowercase(name.get());
        }
        const char* filename = g_mime_part_get_filename(part);
        const bool is_text = mime_type == "text/plain" || mime_type == "text/html";
        const bool attached = g_mime_part_is_attachment(part) || (filename != nullptr && *filename != '\0') || !is_text;

        if (!attached) {
            bool truncated = false;
            const std::string data = content(part, truncated);
            const std::string text = to_utf8(data, g_mime_object_get_content_type_parameter(object, "charset"));
            if (mime_type == "text/plain")
                append_bounded(out_.text_body, text, bounds_.max_text_bytes, out_.truncated);
            else
                append_bounded(out_.html_body, text, bounds_.max_html_bytes, out_.truncated);
            return;
        }
        if (out_.attachments.size() >= bounds_.max_attachments) {
            out_.truncated = true;
            return;
        }
        attachment item;
        item.filename = filename != nullptr ? make_valid_utf8(filename) : std::string();
        truncate_utf8(item.filename, bounds_.max_header_length);
        item.content_type = mime_type;
        last_size_ = 0;
        const std::string data = content(part, item.truncated);
        item.size = last_size_;
        item.sha256 = checksum(G_CHECKSUM_SHA256, data);
        item.sha1 = checksum(G_CHECKSUM_SHA1, data);
        item.md5 = checksum(G_CHECKSUM_MD5, data);
        out_.attachments.push_back(std::move(item));
    }

    parsed_message& out_;
    const limits& bounds_;
    std::size_t decoded_ = 0;
    std::size_t last_size_ = 0;
};

}  // namespace

const std::string* parsed_message::find_header(std::string_view name) const {
    for (const auto& h : headers)
        if (iequals(h.name, name)) return &h.value;
    return nullptr;
}

std::vector<std::string_view> parsed_message::header_values(std::string_view name) const {
    std::vector<std::string_view> values;
    for (const auto& h : headers)
        if (iequals(h.name, name)) values.emplace_back(h.value);
    return values;
}

std::string decode_header_value(std::string_view value) {
    init_gmime();
    auto options = make_options();
    return trim(decode_with(options.get(), value));
}

namespace {

// The top-level headers straight from the raw header block: GMime moves Content-* headers to
// the MIME part, and we want every header, in order, as the client wrote it.
void read_headers(std::string_view raw, const limits& bounds, GMimeParserOptions* options, parsed_message& out) {
    std::size_t pos = 0;
    if (raw.substr(0, 5) == "From ") pos = std::min(raw.size(), raw.find('\n') == std::string_view::npos ? raw.size() : raw.find('\n') + 1);
    std::string name;
    std::string value;
    bool have = false;
    auto flush = [&] {
        if (!have) return;
        have = false;
        if (out.headers.size() >= bounds.max_headers) {
            out.truncated = true;
            return;
        }
        header item;
        item.name = make_valid_utf8(name);
        truncate_utf8(item.name, 256);
        item.value = trim(decode_with(options, value));
        if (item.value.size() > bounds.max_header_length) {
            truncate_utf8(item.value, bounds.max_header_length);
            out.truncated = true;
        }
        out.headers.push_back(std::move(item));
    };
    const std::size_t raw_limit = bounds.max_header_length * 4;  // encoded text is longer than decoded
    while (pos < raw.size()) {
        std::size_t eol = raw.find('\n', pos);
        if (eol == std::string_view::npos) eol = raw.size();
        std::string_view line = raw.substr(pos, eol - pos);
        pos = eol + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) break;  // end of the header block
        if (line.front() == ' ' || line.front() == '\t') {
            if (have && value.size() < raw_limit) value.append(line.substr(0, raw_limit - value.size()));
            continue;
        }
        flush();
        const auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) continue;  // not a header line: skipped
        std::string_view field = line.substr(0, colon);
        while (!field.empty() && (field.back() == ' ' || field.back() == '\t')) field.remove_suffix(1);
        if (field.empty()) continue;
        name.assign(field);
        value.assign(line.substr(colon + 1, raw_limit));
        if (line.size() - colon - 1 > raw_limit) out.truncated = true;
        have = true;
        if (out.headers.size() >= bounds.max_headers) {
            out.truncated = true;
            have = false;
            break;
        }
    }
    flush();
    if (const auto* v = out.find_header("Subject")) out.subject = *v;
    if (const auto* v = out.find_header("From")) out.from = *v;
    if (const auto* v = out.find_header("To")) out.to = *v;
}

std::string_view trim_view(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return text;
}

// Content-Type values the fast path knows GMime reads as a text/plain leaf whose text needs no
// charset conversion: text/plain, optionally with charset us-ascii or utf-8 (quoted or not).
bool simple_content_type(std::string_view value) {
    value = trim_view(value);
    const auto semicolon = value.find(';');
    if (!iequals(trim_view(value.substr(0, semicolon)), "text/plain")) return false;
    if (semicolon == std::string_view::npos) return true;
    std::string_view param = trim_view(value.substr(semicolon + 1));
    if (!istarts_with(param, "charset")) return false;
    param = trim_view(param.substr(7));
    if (param.empty() || param.front() != '=') return false;
    param = trim_view(param.substr(1));
    if (param.size() >= 2 && param.front() == '"' && param.back() == '"') param = param.substr(1, param.size() - 2);
    return iequals(param, "us-ascii") || iequals(param, "utf-8");
}

// The common simple message (every byte printable ASCII, well-formed header lines, one
// text/plain body with no transfer encoding) without GMime: the same result GMime gives
// (checked by MimeParse.FastPathMatchesGMime), at a fraction of the cost. nullopt = not that
// simple: GMime decides.
std::optional<parsed_message> parse_simple(std::string_view raw, const limits& bounds) {
    if (raw.empty() || raw.substr(0, 5) == "From " || !is_plain_ascii(raw)) return std::nullopt;
    // Bare CRs: leave them to GMime.
    for (auto cr = raw.find('\r'); cr != std::string_view::npos; cr = raw.find('\r', cr + 1))
        if (cr + 1 >= raw.size() || raw[cr + 1] != '\n') return std::nullopt;
    // Header block: every line a well-formed field (ftext name, no blank before the colon) or a
    // continuation of one, ended by an empty line.
    std::size_t pos = 0;
    std::size_t body = std::string_view::npos;
    std::size_t count = 0;
    bool content_type_seen = false;
    while (pos < raw.size()) {
        std::size_t eol = raw.find('\n', pos);
        if (eol == std::string_view::npos) return std::nullopt;  // no end of the header block
        std::string_view line = raw.substr(pos, eol - pos);
        pos = eol + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) {
            body = pos;
            break;
        }
        if (line.front() == ' ' || line.front() == '\t') {
            if (count == 0) return std::nullopt;
            continue;
        }
        const auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) return std::nullopt;
        const std::string_view field = line.substr(0, colon);
        for (char c : field)
            if (c <= ' ' || c > '~') return std::nullopt;
        if (++count > bounds.max_headers) return std::nullopt;
        if (line.size() - colon - 1 > bounds.max_header_length) return std::nullopt;
        if (istarts_with(field, "Content-")) {
            // Only a plain Content-Type, folded or not, on one header: everything else (transfer
            // encodings, dispositions, multipart...) is GMime's.
            if (!iequals(field, "Content-Type") || content_type_seen) return std::nullopt;
            content_type_seen = true;
            std::string value(line.substr(colon + 1));
            for (std::size_t next = pos; next < raw.size() && (raw[next] == ' ' || raw[next] == '\t');) {
                std::size_t end = raw.find('\n', next);
                if (end == std::string_view::npos) return std::nullopt;
                std::string_view more = raw.substr(next, end - next);
                if (!more.empty() && more.back() == '\r') more.remove_suffix(1);
                value.append(more);
                next = end + 1;
            }
            if (!simple_content_type(value)) return std::nullopt;
        }
    }
    if (body == std::string_view::npos) return std::nullopt;
    const std::string_view text = raw.substr(body);
    if (text.size() > bounds.max_text_bytes || text.size() > bounds.max_decoded_bytes || bounds.max_parts == 0)
        return std::nullopt;

    parsed_message out;
    read_headers(raw, bounds, nullptr, out);
    out.part_count = 1;
    out.text_body.assign(text);  // within max_text_bytes: checked above
    return out;
}

}  // namespace

parsed_message parse(std::string_view raw, const limits& bounds) {
    if (auto simple = parse_simple(raw, bounds)) return std::move(*simple);
    return parse_with_gmime(raw, bounds);
}

parsed_message parse_with_gmime(std::string_view raw, const limits& bounds) {
    init_gmime();
    parsed_message out;
    auto options = make_options();
    gptr<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(raw.data(), raw.size()));
    gptr<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
    g_mime_parser_set_format(parser.get(), GMIME_FORMAT_MESSAGE);
    gptr<GMimeMessage> message(g_mime_parser_construct_message(parser.get(), options.get()));
    if (!message) {
        out.parse_failed = true;
        bool truncated = false;
        append_bounded(out.text_body, make_valid_utf8(raw), bounds.max_text_bytes, truncated);
        out.truncated = truncated;
        return out;
    }
    read_headers(raw, bounds, options.get(), out);
    walker(out, bounds).walk(g_mime_message_get_mime_part(message.get()), 0);
    return out;
}

}  // namespace relaybait::mime
