#include "rules/needle_automaton.hpp"
#include "time_bound.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

using relaybait::rules::needle_automaton;

namespace {

std::string lower(std::string t) {
    for (auto& c : t)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return t;
}

bool naive(const std::vector<std::string>& needles, const std::string& hay, bool fold) {
    const std::string h = fold ? lower(hay) : hay;
    for (const auto& nd : needles)
        if (!nd.empty() && h.find(fold ? lower(nd) : nd) != std::string::npos) return true;
    return false;
}

}  // namespace

TEST(NeedleAutomaton, SmallCases) {
    const needle_automaton none({}, true);
    EXPECT_TRUE(none.empty());
    EXPECT_FALSE(none.found_in("anything"));
    const needle_automaton only_empty({""}, true);
    EXPECT_FALSE(only_empty.found_in("anything"));

    const needle_automaton folded({"he", "She", "his", "HERS"}, true);
    EXPECT_TRUE(folded.found_in("usHErs"));
    EXPECT_TRUE(folded.found_in("xxshx his"));
    EXPECT_FALSE(folded.found_in("hxsxhixs"));
    EXPECT_FALSE(folded.found_in(""));

    const needle_automaton exact({"aGVsbG8", "%40"}, false);
    EXPECT_TRUE(exact.found_in("..aGVsbG8.."));
    EXPECT_FALSE(exact.found_in("..AGVSBG8.."));
    EXPECT_TRUE(exact.found_in("user%40example"));
    // Failure links: "abcd" fails into "bcx" partway.
    const needle_automaton chained({"abcd", "bcx"}, false);
    EXPECT_TRUE(chained.found_in("abcx"));
    EXPECT_FALSE(chained.found_in("abcabcab"));
    // Bytes above 0x7F and NUL are ordinary bytes.
    const needle_automaton binary({std::string("\xC3\xA9t\xC3\xA9", 5), std::string("a\0b", 3)}, true);
    EXPECT_TRUE(binary.found_in("l'\xC3\xA9T\xC3\xA9 !"));
    EXPECT_TRUE(binary.found_in(std::string("xxA\0Bxx", 7)));
    EXPECT_FALSE(binary.found_in("ab"));
}

TEST(NeedleAutomaton, EqualsNaiveSearch) {
    std::mt19937 rng(11);
    const std::string alphabet = "aAbBcC01.@%\xE9";
    auto random_text = [&](std::size_t max) {
        std::string t;
        const std::size_t n = rng() % (max + 1);
        for (std::size_t i = 0; i < n; ++i) t += alphabet[rng() % alphabet.size()];
        return t;
    };
    for (int round = 0; round < 500; ++round) {
        const bool fold = rng() % 2 == 0;
        std::vector<std::string> needles;
        const int count = static_cast<int>(rng() % 12);
        for (int i = 0; i < count; ++i) needles.push_back(random_text(6));
        const std::vector<std::string_view> views(needles.begin(), needles.end());
        const needle_automaton automaton(views, fold);
        for (int v = 0; v < 40; ++v) {
            const std::string hay = random_text(40);
            ASSERT_EQ(automaton.found_in(hay), naive(needles, hay, fold)) << "fold " << fold << " on [" << hay << "]";
        }
    }
}

// A body built to make the failure links work hardest (long partial matches that fall back
// again and again) still costs one pass.
TEST(NeedleAutomaton, AdversarialValuesAreLinear) {
    std::vector<std::string> needles;
    for (int i = 0; i < 2000; ++i) needles.push_back(std::string(200, 'a') + std::to_string(i) + "!");
    const std::vector<std::string_view> views(needles.begin(), needles.end());
    const auto built = std::chrono::steady_clock::now();
    const needle_automaton automaton(views, true);
    std::string hay;
    while (hay.size() < (4u << 20)) hay += std::string(199, 'A') + "1";
    const auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(automaton.found_in(hay));
    hay += std::string(200, 'a') + "1999!";
    EXPECT_TRUE(automaton.found_in(hay));
    const auto done = std::chrono::steady_clock::now();
    using relaybait::rules::testing::time_bound;
    EXPECT_LT(start - built, time_bound(500));
    EXPECT_LT(done - start, time_bound(1000));
}
