#pragma once
// `relaybait serve`: the listeners, the sessions and the store, wired on one io_context
// thread for the network and the store's own threads for disk work.
#include "config/config.hpp"

namespace relaybait::net {

// Runs until SIGINT/SIGTERM. Returns the process exit code. Throws config::config_error on
// configuration problems found at start (bad certificate file, port in use is a runtime error = 1).
// Everything it obeys is in settings (--test-mode and the other flags are already merged in).
int serve(const config::settings& settings);

}  // namespace relaybait::net
