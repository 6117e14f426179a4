#pragma once
// Relay caps that no test request reaches (1,000 a day each), for tests that look at one cap
// at a time: the test sets the one it is about.
#include "relay/safety.hpp"

namespace relay_test {

inline relaybait::relay::relay_limits wide_limits() {
    relaybait::relay::relay_limits l;
    l.daily = 1000;
    l.per_recipient_daily = 1000;
    l.per_sender_daily = 1000;
    l.per_client_ip_daily = 1000;
    l.per_domain_daily = 1000;
    return l;
}

}  // namespace relay_test
