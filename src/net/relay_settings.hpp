#pragma once
// config::relay_config (plain data, validated by src/config) -> the relay module's options.
// One translation, used by `serve` (which also publishes the limits in the database:
// relay/published_limits.hpp) and by the CLI's `relaybait relay ID`, whose safety applies the
// stricter of its own and the published ones, so both count against the server's caps.
#include "config/config.hpp"
#include "relay/relay_service.hpp"
#include "relay/safety.hpp"

namespace relaybait::net {

relay::relay_limits relay_limits_from(const config::relay_config& relay);
relay::relay_service_options relay_options_from(const config::settings& settings);

}  // namespace relaybait::net
