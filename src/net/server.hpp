#pragma once
// `relaybait serve`: the listeners, the sessions and the store, wired on one io_context
// thread for the network and the store's own threads for disk work.
#include "config/config.hpp"

namespace relaybait::net {

struct serve_options {
    bool test_mode = false;  // what the command line asked for; config::load() has already put
                             // it into settings.relay.test_mode, which is what serve() obeys
};

// Runs until SIGINT/SIGTERM. Returns the process exit code. Throws config::config_error on
// configuration problems found at start (bad certificate file, port in use is a runtime error = 1).
int serve(const config::settings& settings, const serve_options& options);

}  // namespace relaybait::net
