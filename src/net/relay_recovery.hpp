#pragma once
// A probe acknowledged just before a crash may never have reached the relay's safety check:
// submit() hands it to the relay thread in memory. At start, every message of the last day
// whose row says a relay was requested when it was received (relay_requested: never set by
// `rules apply` or a later rules change), whose rule is still an enabled data rule asking for
// a relay, and for which no relay decision exists, is submitted again (the caps then count it
// like any other request).
#include <cstddef>
#include <filesystem>

#include "config/config.hpp"
#include "relay/relay_service.hpp"
#include "rules/rules.hpp"
#include "store/records.hpp"

namespace relaybait::net {

// The relay request for a stored message (its row, and the file the relay reads).
relay::relay_request relay_request_for(const store::message_record& message, const std::filesystem::path& file);

// Returns how many messages were submitted again.
std::size_t resubmit_unsubmitted_relays(const config::settings& settings, const rules::rule_set& rules,
                                        relay::relay_service& relay);

}  // namespace relaybait::net
