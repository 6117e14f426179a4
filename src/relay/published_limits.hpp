#pragma once
// The running server's relay caps, published in the shared DATA/relaybait.db.
//
// `relaybait serve` writes its effective relay_limits (every cap and switch: enabled, daily,
// per_*_daily, max_size, max_recipients, test_mode, and its test_server / test_recipient) into
// the one-row table relay_published_limits (relay migration 5) when it starts, after its
// configuration is loaded and before it relays or accepts anything, overwriting what an
// earlier start wrote, with the time, its pid and its sensor name.
//
// Why: a CLI `relaybait relay ID` (or any other process with its own safety) loads its own
// configuration, possibly none (the built-in defaults) or one without `serve --test-mode`.
// safety::check_and_reserve therefore reads the published row inside its BEGIN IMMEDIATE
// transaction and applies, per cap, the stricter of its own value and the published one
// (stricter_limits). Nothing published (no server ever started on this database, or only
// builds from before migration 5): its own limits apply.
//
// A later start overwrites the row, whatever its caps (looser ones too): the published caps
// are those of the server that last started on the database.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "relay/relay_db.hpp"
#include "relay/safety.hpp"

namespace relaybait::relay {

struct published_limits {
    relay_limits limits;       // as the server runs with them (its test_server/test_recipient too)
    std::string published_at;  // ISO 8601 UTC
    std::int64_t pid = 0;
    std::string sensor;
};

// serve: replaces the published row (one transaction).
void publish_limits(relay_db& db, const relay_limits& limits, const std::string& sensor, std::int64_t pid,
                    sys_time now = std::chrono::system_clock::now());

// The published row, if any. The second overload is for a caller that already holds
// db.mutex() (safety::check_and_reserve, inside its transaction).
std::optional<published_limits> read_published_limits(relay_db& db);
std::optional<published_limits> read_published_limits(relay_db& db, const relay_db::held_lock& held);

// Per cap, the stricter of the two: the smaller number, enabled only when both are, test mode
// when either is. test_server / test_recipient are the published ones (the server delivers the
// rows, to its own test server) unless the published limits have none.
relay_limits stricter_limits(const relay_limits& own, const relay_limits& published);

// own, or stricter_limits(own, published->limits) when something was published.
relay_limits effective_limits(const relay_limits& own, const std::optional<published_limits>& published);

}  // namespace relaybait::relay
