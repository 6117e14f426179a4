#include "rules/needle_automaton.hpp"

#include <algorithm>
#include <string>

#include "common/text.hpp"

namespace relaybait::rules {

needle_automaton::needle_automaton(const std::vector<std::string_view>& needles, bool fold) : fold_(fold) {
    // Sorted needles build the trie with every state's children created in byte order, one
    // after the other: a needle shares a state's child only with the needle just before it.
    std::vector<std::string> keys;
    keys.reserve(needles.size());
    for (auto nd : needles)
        if (!nd.empty()) keys.push_back(fold ? text::lowercase(nd) : std::string(nd));
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());

    struct edge {
        std::uint32_t from;
        unsigned char byte;
        std::uint32_t to;
    };
    std::vector<edge> edges;
    std::vector<std::uint32_t> last_child(1, 0);  // per state, its newest child (0 = none)
    std::vector<unsigned char> last_byte(1, 0);
    std::vector<unsigned char> terminal(1, 0);
    for (const auto& key : keys) {
        std::uint32_t state = 0;
        for (char ch : key) {
            // A needle that has a shorter one as its prefix adds nothing to "contains any" (the
            // shorter one sorts first).
            if (terminal[state]) break;
            const auto byte = static_cast<unsigned char>(ch);
            if (last_child[state] != 0 && last_byte[state] == byte) {
                state = last_child[state];
                continue;
            }
            const auto created = static_cast<std::uint32_t>(terminal.size());
            edges.push_back({state, byte, created});
            last_child[state] = created;
            last_byte[state] = byte;
            last_child.push_back(0);
            last_byte.push_back(0);
            terminal.push_back(0);
            state = created;
        }
        terminal[state] = 1;
    }
    last_child = {};
    last_byte = {};

    // Edges grouped by state (a stable counting sort keeps each state's children in byte order).
    const std::size_t states = terminal.size();
    first_edge_.assign(states + 1, 0);
    for (const auto& e : edges) ++first_edge_[e.from + 1];
    for (std::size_t s = 0; s < states; ++s) first_edge_[s + 1] += first_edge_[s];
    edge_byte_.resize(edges.size());
    edge_to_.resize(edges.size());
    {
        std::vector<std::uint32_t> next(first_edge_.begin(), first_edge_.end() - 1);
        for (const auto& e : edges) {
            edge_byte_[next[e.from]] = e.byte;
            edge_to_[next[e.from]++] = e.to;
        }
    }
    edges = {};
    for (std::uint32_t k = first_edge_[0]; k < first_edge_[1]; ++k) root_next_[edge_byte_[k]] = edge_to_[k];

    // Failure links, breadth first: a state's link is the longest proper suffix of its path that
    // is also a path of the trie; accepting when a needle ends there or anywhere down that chain.
    fail_.assign(states, 0);
    accepting_ = std::move(terminal);
    std::vector<std::uint32_t> queue;
    queue.reserve(states);
    for (std::uint32_t k = first_edge_[0]; k < first_edge_[1]; ++k) queue.push_back(edge_to_[k]);
    for (std::size_t head = 0; head < queue.size(); ++head) {
        const std::uint32_t state = queue[head];
        for (std::uint32_t k = first_edge_[state]; k < first_edge_[state + 1]; ++k) {
            const unsigned char byte = edge_byte_[k];
            const std::uint32_t to = edge_to_[k];
            std::uint32_t link = fail_[state];
            for (;;) {
                const std::uint32_t next = link == 0 ? root_next_[byte] : child(link, byte);
                if (next != 0 || link == 0) {
                    link = next;
                    break;
                }
                link = fail_[link];
            }
            fail_[to] = link;
            accepting_[to] = accepting_[to] | accepting_[link];
            queue.push_back(to);
        }
    }
}

std::uint32_t needle_automaton::child(std::uint32_t state, unsigned char byte) const {
    const auto begin = edge_byte_.begin() + first_edge_[state];
    const auto end = edge_byte_.begin() + first_edge_[state + 1];
    const auto it = std::lower_bound(begin, end, byte);
    return it != end && *it == byte ? edge_to_[static_cast<std::size_t>(it - edge_byte_.begin())] : 0;
}

bool needle_automaton::found_in(std::string_view hay) const {
    if (empty()) return false;
    std::uint32_t state = 0;
    for (char ch : hay) {
        const auto byte = static_cast<unsigned char>(fold_ ? text::ascii_lower(ch) : ch);
        for (;;) {
            if (state == 0) {
                state = root_next_[byte];
                break;
            }
            if (const std::uint32_t next = child(state, byte); next != 0) {
                state = next;
                break;
            }
            state = fail_[state];
        }
        if (accepting_[state]) return true;
    }
    return false;
}

}  // namespace relaybait::rules
