#include "net/queue_id.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <set>

namespace relaybait::net {
namespace {

TEST(queue_id, looks_like_a_postfix_short_queue_id) {
    queue_id_generator ids(42);
    const std::regex postfix_short(R"([0-9A-F]{5}[0-9A-F]{6,7})");
    for (int i = 0; i < 1000; ++i) {
        const auto id = ids.next(std::chrono::system_clock::now());
        EXPECT_TRUE(std::regex_match(id, postfix_short)) << id;
    }
}

TEST(queue_id, unique_even_within_one_microsecond) {
    queue_id_generator ids(7);
    const auto frozen = std::chrono::system_clock::now();
    std::set<std::string> seen;
    for (int i = 0; i < 100'000; ++i) EXPECT_TRUE(seen.insert(ids.next(frozen)).second);
}

TEST(queue_id, the_first_five_digits_are_the_microseconds) {
    queue_id_generator ids(1);
    const auto at = std::chrono::system_clock::time_point(std::chrono::microseconds(1'700'000'000'123'456));
    EXPECT_EQ(ids.next(at).substr(0, 5), "1E240");  // 123456 = 0x1E240
}

TEST(queue_id, different_seeds_give_different_sequences) {
    queue_id_generator a(1), b(2);
    const auto now = std::chrono::system_clock::now();
    EXPECT_NE(a.next(now), b.next(now));
}

}  // namespace
}  // namespace relaybait::net
