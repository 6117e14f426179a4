#pragma once
// Text output for the operator's terminal. Everything shown may come from an attacker, so every
// cell passes through escape_for_terminal(): no byte can move the cursor, change colours, set
// the window title or reorder text (bidi controls).
#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace relaybait::cli {

// The code points a terminal may act on rather than print: C0 controls, DEL, C1 controls (CSI =
// U+009B), the bidi marks, embeddings, overrides and isolates, U+2028/U+2029 and the BOM. The one
// list both the table output and the --json output escape.
bool is_terminal_control(char32_t code_point);

// Length of the valid UTF-8 sequence at text[i] (1 to 4) and its code point; 0 when invalid
// (overlong, surrogate, above U+10FFFF, cut short). text[i] must exist.
std::size_t decode_utf8(std::string_view text, std::size_t i, char32_t& code_point);

// Printable UTF-8 is kept; \t \r \n and the backslash become \t \r \n \\; other C0/C1 controls,
// DEL, bidi and line-separator code points become \xNN or \u{XXXX}; invalid UTF-8 bytes become \xNN.
std::string escape_for_terminal(std::string_view bytes);

// A serialized JSON document made safe to print: every is_terminal_control() code point that is
// still raw (boost::json escapes only C0) becomes a \uXXXX escape, and an invalid UTF-8 byte
// becomes \ufffd. Still valid JSON with the same decoded values (only strings can hold such
// characters, and a raw character is never part of an escape).
std::string escape_json_for_terminal(std::string_view json);

// Columns a string of escape_for_terminal()'s output takes (one per code point).
std::size_t display_width(std::string_view text);

// Cuts `text` (already escaped) to at most `width` columns, ending with "…" when cut.
std::string truncate_to_width(std::string_view text, std::size_t width);

struct column {
    std::string header;
    std::size_t max_width = 40;  // longer cells are truncated with an ellipsis
    bool align_right = false;    // numbers
};

// Column widths come from the content (capped per column); two spaces between columns; the
// last column is not padded.
class table {
public:
    explicit table(std::vector<column> columns);
    void add_row(const std::vector<std::string>& cells);  // raw bytes; escaped and truncated here
    std::size_t rows() const { return rows_.size(); }
    void render(std::ostream& out) const;

private:
    void render_row(std::ostream& out, const std::vector<std::string>& cells) const;

    std::vector<column> columns_;
    std::vector<std::size_t> widths_;
    std::vector<std::vector<std::string>> rows_;
};

// "label:   value" lines for one record, labels aligned, values escaped but not truncated.
using field_list = std::vector<std::pair<std::string, std::string>>;
void render_fields(std::ostream& out, const field_list& fields);

}  // namespace relaybait::cli
