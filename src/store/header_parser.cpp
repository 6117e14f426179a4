#include "store/header_parser.hpp"

#include "common/text.hpp"

#include <algorithm>
#include <string>

namespace relaybait::store {
namespace {

using text::iequals;

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && (is_wsp(s.front()) || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
    while (!s.empty() && (is_wsp(s.back()) || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
    return s;
}

std::string* field_for(message_headers& h, std::string_view name) {
    if (iequals(name, "subject")) return &h.subject;
    if (iequals(name, "from")) return &h.from;
    if (iequals(name, "to")) return &h.to;
    if (iequals(name, "date")) return &h.date;
    if (iequals(name, "message-id")) return &h.message_id;
    if (iequals(name, "x-mailer")) return &h.x_mailer;
    if (iequals(name, "user-agent")) return &h.user_agent;
    return nullptr;
}

// A field name is printable ASCII without colon (RFC 5322 ftext); obsolete syntax allows
// whitespace between the name and the colon.
bool valid_name(std::string_view name) {
    if (name.empty()) return false;
    return std::all_of(name.begin(), name.end(), [](char c) { return c >= 33 && c <= 126 && c != ':'; });
}

}  // namespace

std::size_t header_section_end(std::string_view m) {
    // An empty first line means no headers at all.
    if (m.starts_with("\r\n")) return 2;
    if (m.starts_with("\n")) return 1;
    for (std::size_t i = m.find('\n'); i != std::string_view::npos; i = m.find('\n', i + 1)) {
        if (i + 1 < m.size() && m[i + 1] == '\n') return i + 2;
        if (i + 2 < m.size() && m[i + 1] == '\r' && m[i + 2] == '\n') return i + 3;
    }
    return std::string_view::npos;
}

message_headers parse_headers(std::string_view message) {
    message_headers h;
    std::string_view section = message.substr(0, std::min(message.size(), max_header_capture));
    if (const auto end = header_section_end(section); end != std::string_view::npos) section = section.substr(0, end);

    std::string* current = nullptr;  // the field being filled, or null when ignored
    bool seen[7] = {};
    std::string* const slots[7] = {&h.subject, &h.from, &h.to, &h.date, &h.message_id, &h.x_mailer, &h.user_agent};
    const auto append = [&](std::string_view text) {
        if (!current) return;
        const std::size_t room = max_header_value - std::min(current->size(), max_header_value);
        current->append(text.substr(0, room));
    };

    std::size_t pos = 0;
    while (pos < section.size()) {
        std::size_t eol = section.find('\n', pos);
        if (eol == std::string_view::npos) eol = section.size();
        std::string_view line = section.substr(pos, eol - pos);
        pos = eol + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) break;
        if (is_wsp(line.front())) {  // continuation: unfold, keep the whitespace
            append(line);
            continue;
        }
        current = nullptr;
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) continue;  // garbage line: ignored, ends the field
        std::string_view name = line.substr(0, colon);
        while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
        if (!valid_name(name)) continue;
        std::string* slot = field_for(h, name);
        if (!slot) continue;
        const auto index = static_cast<std::size_t>(std::find(std::begin(slots), std::end(slots), slot) - std::begin(slots));
        if (seen[index]) continue;  // first occurrence wins
        seen[index] = true;
        current = slot;
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && is_wsp(value.front())) value.remove_prefix(1);
        append(value);
    }
    for (auto* slot : slots) {
        const std::string_view t = trim(*slot);
        if (t.size() != slot->size()) *slot = std::string(t);
    }
    return h;
}

}  // namespace relaybait::store
