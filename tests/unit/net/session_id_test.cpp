#include "net/app_context.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <regex>

namespace relaybait::net {
namespace {

constexpr std::int64_t some_ms = 1'700'000'000'123;  // November 2023, in unix milliseconds
constexpr std::int64_t one_hour_ms = 3'600'000;

TEST(session_id, the_clock_sits_above_twenty_random_bits) {
    const auto id = next_session_id(0, some_ms, 0xABCDE);
    EXPECT_EQ(id >> 20, static_cast<std::uint64_t>(some_ms));
    EXPECT_EQ(id & 0xFFFFF, 0xABCDEu);
}

TEST(session_id, only_the_low_twenty_random_bits_are_used) {
    EXPECT_EQ(next_session_id(0, some_ms, 0xFFFF'FFFF'FFF0'0001), next_session_id(0, some_ms, 1));
}

TEST(session_id, increases_with_a_normal_clock) {
    std::uint64_t last = 0;
    for (std::int64_t ms = some_ms; ms < some_ms + 1000; ++ms) {
        const auto random = static_cast<std::uint64_t>(ms * 7919) & 0xFFFFF;  // varies, sometimes smaller
        const auto id = next_session_id(last, ms, random);
        ASSERT_GT(id, last) << "at " << ms;
        last = id;
    }
}

TEST(session_id, still_increases_when_the_clock_steps_back_an_hour) {
    const auto before = next_session_id(0, some_ms, 0x12345);
    const auto after = next_session_id(before, some_ms - one_hour_ms, 0xFFFFF);
    EXPECT_EQ(after, before + 1);
    EXPECT_EQ(next_session_id(after, some_ms - one_hour_ms + 1, 0), after + 1);
}

TEST(session_id, still_increases_within_one_millisecond_with_a_smaller_random_part) {
    const auto first = next_session_id(0, some_ms, 0x80000);
    const auto second = next_session_id(first, some_ms, 0x00001);
    EXPECT_EQ(second, first + 1);
}

TEST(session_id, the_clock_takes_over_again_once_it_passes_the_last_id) {
    const auto ahead = next_session_id(0, some_ms, 0);
    const auto behind = next_session_id(ahead, some_ms - 1, 0);
    EXPECT_EQ(next_session_id(behind, some_ms + 1, 5), (static_cast<std::uint64_t>(some_ms + 1) << 20) | 5);
}

TEST(session_id, is_sixteen_lowercase_hex_digits) {
    const std::regex sixteen_hex("[0-9a-f]{16}");
    for (const std::uint64_t id : {std::uint64_t{0}, std::uint64_t{1}, next_session_id(0, some_ms, 0xFFFFF), ~std::uint64_t{0}}) {
        EXPECT_TRUE(std::regex_match(format_session_id(id), sixteen_hex)) << format_session_id(id);
    }
    EXPECT_EQ(format_session_id(0xABC), "0000000000000abc");
}

// The store keeps ids as TEXT: a variable width would sort "ffff" after "10000".
TEST(session_id, the_text_sorts_like_the_number_across_a_new_digit) {
    const std::uint64_t pairs[][2] = {{0xF, 0x10}, {0xFFFF, 0x10000}, {0x0FFF'FFFF'FFFF'FFFF, 0x1000'0000'0000'0000}};
    for (const auto& [smaller, larger] : pairs) {
        EXPECT_LT(format_session_id(smaller), format_session_id(larger)) << std::hex << smaller << " < " << larger;
    }
}

TEST(session_id, a_sequence_across_a_clock_step_sorts_as_text_in_issue_order) {
    std::uint64_t last = 0;
    std::string last_text;
    const std::int64_t clock[] = {some_ms, some_ms, some_ms - one_hour_ms, some_ms + 1, some_ms + 2};
    const std::uint64_t random[] = {0x90000, 0x00010, 0xFFFFF, 0x00000, 0x7FFFF};
    for (std::size_t i = 0; i < std::size(clock); ++i) {
        last = next_session_id(last, clock[i], random[i]);
        const auto text = format_session_id(last);
        EXPECT_LT(last_text, text) << "step " << i;
        last_text = text;
    }
}

}  // namespace
}  // namespace relaybait::net
