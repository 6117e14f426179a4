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

// Printable UTF-8 is kept; \t \r \n and the backslash become \t \r \n \\; other C0/C1 controls,
// DEL, bidi and line-separator code points become \xNN or \u{XXXX}; invalid UTF-8 bytes become \xNN.
std::string escape_for_terminal(std::string_view bytes);

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
