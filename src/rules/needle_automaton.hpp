// Whether a value contains any of many needles, in one pass over the value (Aho-Corasick).
// The needles of a `contains` on session values ($rcpt_to, encoded($mail_from), ...) are the
// attacker's: scanning the value once per needle would cost needles x value bytes (1,000
// recipients x ten encodings x a 4 MiB body), this costs value bytes plus needle bytes.
// Why not RE2::Set (RE2 is already the rules' regex engine): a set matches with a DFA only, and
// when thousands of literals exceed its memory budget Match fails instead of answering.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace relaybait::rules {

class needle_automaton {
public:
    needle_automaton() = default;
    // `fold`: compare ASCII case-insensitively (needles and values are folded to lower case).
    // Empty needles are ignored (they never match, as elsewhere in the language). Building costs
    // O(total needle bytes x log) time; it keeps ~15 bytes per needle byte (~35 while
    // building): the caller bounds the needles (expr.hpp, max_dynamic_needle_bytes).
    needle_automaton(const std::vector<std::string_view>& needles, bool fold);

    bool empty() const noexcept { return fail_.size() <= 1; }
    // True when `hay` contains at least one needle. O(hay.size()): each byte takes one step
    // (a binary search among at most 256 edges) plus failure steps that never outnumber the
    // steps taken.
    bool found_in(std::string_view hay) const;

private:
    std::uint32_t child(std::uint32_t state, unsigned char byte) const;  // 0 = none

    bool fold_ = false;
    std::array<std::uint32_t, 256> root_next_{};  // the root's transitions, direct (most steps)
    // State 0 is the root. Edges of state s: [first_edge_[s], first_edge_[s + 1]), by byte.
    std::vector<std::uint32_t> fail_;
    std::vector<std::uint32_t> first_edge_;
    std::vector<unsigned char> edge_byte_;
    std::vector<std::uint32_t> edge_to_;
    std::vector<unsigned char> accepting_;  // a needle ends here or at a state of the failure chain
};

}  // namespace relaybait::rules
