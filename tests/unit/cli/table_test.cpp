#include "cli/table.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace relaybait::cli {
namespace {

TEST(escape_for_terminal, keeps_printable_text_and_utf8) {
    EXPECT_EQ(escape_for_terminal("Hello <a@b.example>"), "Hello <a@b.example>");
    EXPECT_EQ(escape_for_terminal("Gr\xc3\xbc\xc3\x9f" "e \xe2\x82\xac"), "Gr\xc3\xbc\xc3\x9f" "e \xe2\x82\xac");
}

TEST(escape_for_terminal, escapes_everything_a_terminal_would_act_on) {
    EXPECT_EQ(escape_for_terminal("\x1b]0;owned\x07"), "\\x1b]0;owned\\x07");       // window title
    EXPECT_EQ(escape_for_terminal("\x1b[2J\x1b[31mred"), "\\x1b[2J\\x1b[31mred");   // clear screen, colour
    EXPECT_EQ(escape_for_terminal("a\r\nb\tc\\d"), "a\\r\\nb\\tc\\\\d");
    EXPECT_EQ(escape_for_terminal(std::string("nul\0del\x7f", 8)), "nul\\x00del\\x7f");
    EXPECT_EQ(escape_for_terminal("\xc2\x9b" "31m"), "\\u{009b}31m");                 // C1 CSI in UTF-8
    EXPECT_EQ(escape_for_terminal("\xe2\x80\xae" "txt.exe"), "\\u{202e}txt.exe");     // right-to-left override
    EXPECT_EQ(escape_for_terminal("\x9b" "31m"), "\\x9b31m");                         // raw 8-bit CSI
    EXPECT_EQ(escape_for_terminal("\xff\xfe"), "\\xff\\xfe");                         // invalid UTF-8
    EXPECT_EQ(escape_for_terminal("\xc0\xaf"), "\\xc0\\xaf");                         // overlong '/'
    EXPECT_EQ(escape_for_terminal("\xed\xa0\x80"), "\\xed\\xa0\\x80");                // surrogate
    EXPECT_EQ(escape_for_terminal("\xe2\x82"), "\\xe2\\x82");                         // cut sequence
}

TEST(escape_json_for_terminal, escapes_what_the_serializer_leaves_raw) {
    // Ordinary JSON, UTF-8 and the serializer's own escapes are kept as they are.
    const std::string plain = "{\"a\":\"Gr\xc3\xbc\xc3\x9f" "e \xe2\x82\xac \xf0\x9f\x98\x80\",\"b\":[1,\"\\u001b\\\\\"]}";
    EXPECT_EQ(escape_json_for_terminal(plain), plain);
    EXPECT_EQ(escape_json_for_terminal("[\"\xc2\x9b" "31m\"]"), "[\"\\u009b31m\"]");          // C1 CSI
    EXPECT_EQ(escape_json_for_terminal("[\"\xc2\x85\"]"), "[\"\\u0085\"]");                  // C1 NEL
    EXPECT_EQ(escape_json_for_terminal("[\"a\x7f" "b\"]"), "[\"a\\u007fb\"]");                // DEL
    EXPECT_EQ(escape_json_for_terminal("[\"\xe2\x80\xae" "exe\"]"), "[\"\\u202eexe\"]");    // RLO
    EXPECT_EQ(escape_json_for_terminal("[\"\xe2\x81\xa6\xe2\x81\xa9\"]"), "[\"\\u2066\\u2069\"]");  // isolates
    EXPECT_EQ(escape_json_for_terminal("[\"\xe2\x80\x8e\xe2\x80\x8f\xd8\x9c\"]"), "[\"\\u200e\\u200f\\u061c\"]");
    EXPECT_EQ(escape_json_for_terminal("[\"\x9b\xff\"]"), "[\"\\ufffd\\ufffd\"]");         // invalid UTF-8
    // A backslash before a raw control is the serializer's "\\": the control gets its own escape.
    EXPECT_EQ(escape_json_for_terminal("[\"\\\\\xc2\x9b\"]"), "[\"\\\\\\u009b\"]");
    EXPECT_EQ(escape_json_for_terminal("{\n\t\"a\": 1\r\n}"), "{\n\t\"a\": 1\r\n}");  // whitespace between tokens
}

TEST(truncate_to_width, cuts_with_an_ellipsis_on_code_points) {
    EXPECT_EQ(truncate_to_width("abcdef", 6), "abcdef");
    EXPECT_EQ(truncate_to_width("abcdefg", 6), "abcde\u2026");
    EXPECT_EQ(display_width(truncate_to_width("abcdefg", 6)), 6u);
    EXPECT_EQ(truncate_to_width("\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc", 3), "\xc3\xbc\xc3\xbc\u2026");
    EXPECT_EQ(display_width("\xc3\xbc\xc3\xbc"), 2u);
}

TEST(table, aligns_columns_from_content) {
    table view({{"ID", 10, true}, {"NAME", 20}, {"NOTE", 30}});
    view.add_row({"7", "alice", "first"});
    view.add_row({"1234", "bob", ""});
    std::ostringstream out;
    view.render(out);
    EXPECT_EQ(out.str(),
              "  ID  NAME   NOTE\n"
              "   7  alice  first\n"
              "1234  bob    \n");
}

TEST(table, truncates_long_cells_and_escapes_them) {
    table view({{"A", 5}, {"B", 10}});
    view.add_row({"0123456789", "x\x1b[31my"});
    std::ostringstream out;
    view.render(out);
    EXPECT_EQ(out.str(),
              "A      B\n"
              "0123\u2026  x\\x1b[31my\n");
    EXPECT_EQ(out.str().find('\x1b'), std::string::npos);
}

TEST(table, multibyte_cells_keep_alignment) {
    table view({{"S", 10}, {"T", 5}});
    view.add_row({"\xc3\xbc\xc3\xbc", "x"});
    view.add_row({"abc", "y"});
    std::ostringstream out;
    view.render(out);
    EXPECT_EQ(out.str(),
              "S    T\n"
              "\xc3\xbc\xc3\xbc   x\n"
              "abc  y\n");
}

TEST(render_fields, aligns_labels_and_escapes_values) {
    std::ostringstream out;
    render_fields(out, {{"id", "1"}, {"subject", "hi\x1b[0m"}});
    EXPECT_EQ(out.str(),
              "id:      1\n"
              "subject: hi\\x1b[0m\n");
}

}  // namespace
}  // namespace relaybait::cli
