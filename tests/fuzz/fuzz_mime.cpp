// libFuzzer target for MIME parsing: arbitrary bytes through mime::parse (never throws, stays
// within its limits) and, differentially, the fast path for simple messages against GMime:
// whenever parse() did not go to GMime, both must give the same fields.
// Run: build/fuzz/tests/fuzz/fuzz_mime -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mime/message.hpp"

using namespace relaybait;

namespace {

bool same(const mime::parsed_message& a, const mime::parsed_message& b) {
    if (a.headers.size() != b.headers.size()) return false;
    for (std::size_t i = 0; i < a.headers.size(); ++i)
        if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) return false;
    return a.subject == b.subject && a.from == b.from && a.to == b.to && a.text_body == b.text_body &&
           a.html_body == b.html_body && a.attachments.size() == b.attachments.size() && a.truncated == b.truncated &&
           a.part_count == b.part_count && a.parse_failed == b.parse_failed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view raw(reinterpret_cast<const char*>(data), size);
    mime::limits bounds;
    bounds.max_text_bytes = 64 * 1024;
    bounds.max_html_bytes = 64 * 1024;
    const auto parsed = mime::parse(raw, bounds);
    if (parsed.text_body.size() > bounds.max_text_bytes || parsed.html_body.size() > bounds.max_html_bytes ||
        parsed.headers.size() > bounds.max_headers || parsed.attachments.size() > bounds.max_attachments)
        std::abort();
    const auto reference = mime::parse_with_gmime(raw, bounds);
    // Messages the fast path takes carry no attachments and never fail; when parse() agrees
    // with GMime there is nothing to check, and when it differs it must be because GMime was
    // not used and the fast path is wrong.
    if (!same(parsed, reference)) std::abort();
    return 0;
}
