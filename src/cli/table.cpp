#include "cli/table.hpp"

#include <algorithm>
#include <cstdio>

namespace relaybait::cli {
namespace {

void append_hex(std::string& out, const char* format, unsigned value) {
    char buffer[16];
    std::snprintf(buffer, sizeof buffer, format, value);
    out += buffer;
}

void append_ascii(std::string& out, unsigned char c) {
    switch (c) {
        case '\\': out += "\\\\"; return;
        case '\t': out += "\\t"; return;
        case '\r': out += "\\r"; return;
        case '\n': out += "\\n"; return;
        default: break;
    }
    if (is_terminal_control(c)) return append_hex(out, "\\x%02x", c);
    out += static_cast<char>(c);
}

}  // namespace

std::size_t decode_utf8(std::string_view text, std::size_t i, char32_t& code_point) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = byte(i);
    std::size_t length = 0;
    char32_t minimum = 0;
    if (lead < 0x80) {
        code_point = lead;
        return 1;
    } else if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2, minimum = 0x80, code_point = lead & 0x1f;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3, minimum = 0x800, code_point = lead & 0x0f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4, minimum = 0x10000, code_point = lead & 0x07;
    } else {
        return 0;
    }
    if (i + length > text.size()) return 0;
    for (std::size_t k = 1; k < length; ++k) {
        if ((byte(i + k) & 0xc0) != 0x80) return 0;
        code_point = (code_point << 6) | (byte(i + k) & 0x3f);
    }
    const bool surrogate = code_point >= 0xd800 && code_point <= 0xdfff;
    if (code_point < minimum || code_point > 0x10ffff || surrogate) return 0;
    return length;
}

bool is_terminal_control(char32_t c) {
    return c < 0x20 || c == 0x7f ||                        // C0 controls (ESC = U+001B), DEL
           (c >= 0x80 && c <= 0x9f) ||                      // C1 controls (CSI = U+009B)
           c == 0x200e || c == 0x200f || c == 0x061c ||     // bidi marks
           (c >= 0x202a && c <= 0x202e) ||                  // bidi embeddings and overrides
           (c >= 0x2066 && c <= 0x2069) ||                  // bidi isolates
           c == 0x2028 || c == 0x2029 || c == 0xfeff;       // line/paragraph separators, BOM
}

std::string escape_json_for_terminal(std::string_view json) {
    std::string out;
    out.reserve(json.size());
    for (std::size_t i = 0; i < json.size();) {
        char32_t code_point = 0;
        const std::size_t length = decode_utf8(json, i, code_point);
        if (length == 0) {
            out += "\\ufffd";
            ++i;
        } else if (is_terminal_control(code_point) && code_point != '\t' && code_point != '\n' && code_point != '\r') {
            // (Tab, LF and CR only appear raw as whitespace between tokens: inside a string the
            // serializer wrote them as \t \n \r already.) Every code point on the list is in the
            // BMP: one \uXXXX, no surrogate pair.
            append_hex(out, "\\u%04x", static_cast<unsigned>(code_point));
            i += length;
        } else {
            out.append(json.substr(i, length));
            i += length;
        }
    }
    return out;
}

std::string escape_for_terminal(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    for (std::size_t i = 0; i < bytes.size();) {
        const auto c = static_cast<unsigned char>(bytes[i]);
        if (c < 0x80) {
            append_ascii(out, c);
            ++i;
            continue;
        }
        char32_t code_point = 0;
        const std::size_t length = decode_utf8(bytes, i, code_point);
        if (length == 0) {
            append_hex(out, "\\x%02x", c);
            ++i;
        } else if (is_terminal_control(code_point)) {
            append_hex(out, "\\u{%04x}", static_cast<unsigned>(code_point));
            i += length;
        } else {
            out.append(bytes.substr(i, length));
            i += length;
        }
    }
    return out;
}

std::size_t display_width(std::string_view text) {
    return static_cast<std::size_t>(
        std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; }));
}

std::string truncate_to_width(std::string_view text, std::size_t width) {
    if (display_width(text) <= width) return std::string(text);
    if (width == 0) return {};
    std::size_t kept = 0;
    std::size_t end = 0;
    while (end < text.size()) {
        const bool starts_code_point = (static_cast<unsigned char>(text[end]) & 0xc0) != 0x80;
        if (starts_code_point && kept == width - 1) break;
        if (starts_code_point) ++kept;
        ++end;
    }
    return std::string(text.substr(0, end)) + "\u2026";
}

table::table(std::vector<column> columns) : columns_(std::move(columns)) {
    for (const column& c : columns_) widths_.push_back(std::min(display_width(c.header), c.max_width));
}

void table::add_row(const std::vector<std::string>& cells) {
    std::vector<std::string> row;
    for (std::size_t i = 0; i < columns_.size(); ++i) {
        std::string cell = i < cells.size() ? truncate_to_width(escape_for_terminal(cells[i]), columns_[i].max_width) : "";
        widths_[i] = std::max(widths_[i], display_width(cell));
        row.push_back(std::move(cell));
    }
    rows_.push_back(std::move(row));
}

void table::render_row(std::ostream& out, const std::vector<std::string>& cells) const {
    std::string line;
    for (std::size_t i = 0; i < cells.size(); ++i) {
        const bool last = i + 1 == cells.size();
        const std::string padding(widths_[i] - display_width(cells[i]), ' ');
        if (i != 0) line += "  ";
        if (columns_[i].align_right) line += padding + cells[i];
        else line += cells[i] + (last ? "" : padding);
    }
    out << line << '\n';
}

void table::render(std::ostream& out) const {
    std::vector<std::string> headers;
    for (const column& c : columns_) headers.push_back(truncate_to_width(c.header, c.max_width));
    render_row(out, headers);
    for (const auto& row : rows_) render_row(out, row);
}

void render_fields(std::ostream& out, const field_list& fields) {
    std::size_t width = 0;
    for (const auto& field : fields) width = std::max(width, field.first.size());
    for (const auto& [label, value] : fields)
        out << label << ':' << std::string(width - label.size(), ' ') << ' ' << escape_for_terminal(value) << '\n';
}

}  // namespace relaybait::cli
