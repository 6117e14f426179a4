#pragma once
// The relay: runs after the 250, on its own thread and io_context (never the network
// thread's), so a relay never blocks a session.
//
//   submit(request)  thread-safe, returns at once. On the relay thread: sha256 of the stored
//                    file minus trace headers (when the request has none), then
//                    safety::check_and_reserve (the only way into relay_queue), then the
//                    event relay.queued or relay.refused{cap}.
//   scheduler        claims due rows of relay_queue (durable, shared DB: rows queued before a
//                    restart, by `relaybait relay ID` from the CLI, or by another process are
//                    picked up), never while paused or disabled, and delivers each row (one
//                    recipient) on its own coroutine. It reads the queue only when the
//                    database may have changed (db_change_probe: a stat() per poll when idle),
//                    when it was woken, or when a row it read falls due:
//     1. MX lookup of the recipient's domain (c-ares; implicit MX; null MX/NXDOMAIN = failed)
//     2. test mode: the lookup is still made and recorded, then the copy goes to
//        limits.test_server / limits.test_recipient and nowhere else (safety invariant 3)
//        Test mode is the row's (relay_queue.test_mode, recorded at reservation) OR this
//        process's: a row reserved in test mode is failed, never sent to its real recipient,
//        when this process has no test_server/test_recipient.
//     3. else the first max_mx_hosts MX hosts in preference order, each host's addresses
//        IPv6 first (IPv4 only when the domain or a parent is in force_ipv4_domains), minus
//        every address that is not globally routable (destination_policy.hpp; unless
//        allow_private_destinations; a domain left with none is failed, "MX x resolves only
//        to non-public addresses ..."), each configured port (465 = implicit TLS, others
//        STARTTLS when offered), at most max_connections per round; a STARTTLS handshake
//        failure is retried once in clear text on the same address (opportunistic TLS,
//        RFC 7435). The round ends by delivery_deadline (default lease / 2): no candidate
//        is tried after it and the SMTP session in progress is abandoned (temporary).
//     4. every connection is a relay_attempts row (MX host, IP, port, TLS, reply, transcript)
//     5. delivered (2xx) or permanent (5xx) ends the row; otherwise deferred with exponential
//        backoff retry_base * 2^(attempts-1) (capped at retry_max) until max_attempts, then failed
//     6. final rows: the relayed copy is stored in Maildir ".Probes" (through store::ingest,
//        so it is also a messages row) with X-Relaybait-Relay-* result headers, and the day's
//        ".Logs" message is rewritten; events relay.delivered / relay.failed / relay.deferred.
//   pause()/resume() persist relay_state.paused (the CLI's `relaybait relay pause` does the
//   same on the DB, and a running service sees it within poll_interval).
//   stop() stops the thread; rows being sent stay `sending` with a lease and are taken up
//   again after the lease expires (at-least-once, like an MTA after a crash).
//   One row is delivered by one coroutine at a time: the rows this process is delivering are
//   never claimed again by it (even once their lease has run out, or the wall clock jumped),
//   and each claim counts an attempt, so a row whose deliveries never finish (a crash loop)
//   is failed after max_attempts claims.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "relay/resolver.hpp"
#include "relay/safety.hpp"
#include "relay/smtp_client.hpp"

namespace relaybait::store {
class ingest;
}
namespace relaybait::events {
class event_log;
}

namespace relaybait::relay {

struct relay_service_options {
    std::filesystem::path data_dir;  // relaybait.db and maildir/ live here
    relay_limits limits;
    std::string hostname = "localhost";  // EHLO name (the sensor's hostname)
    std::string sensor;                  // events' "sensor" field
    resolver_options dns;
    std::vector<std::string> force_ipv4_domains = {"gmail.com", "googlemail.com", "google.com"};
    std::vector<std::uint16_t> ports = {25};  // in order; 465 = implicit TLS
    unsigned max_mx_hosts = 3;
    unsigned max_connections = 6;   // connections per delivery round
    unsigned max_attempts = 5;      // rounds before a temporary failure becomes final
    std::chrono::seconds retry_base{300};
    std::chrono::seconds retry_max{4 * 3600};
    std::chrono::milliseconds poll_interval{5000};
    std::chrono::seconds lease{3600};
    // A delivery round's budget (steady clock), from the claim to its last connection; must be
    // well under `lease` (other processes on the DB take the row up when the lease runs out).
    // Zero: lease / 2.
    std::chrono::seconds delivery_deadline{0};
    // Connect to non-public addresses (loopback, RFC 1918, link-local, ...) that MX records
    // resolve to. Only for tests whose fake MX lives on loopback; test mode's test_server is
    // not subject to it (the operator chose it).
    bool allow_private_destinations = false;
    smtp_client_options client;  // timeouts, TLS context (helo_name is set from hostname)
};

class relay_service {
public:
    // ingest / events may be null (no .Probes copy / no events). Both must outlive the service.
    relay_service(relay_service_options options, store::ingest* ingest, events::event_log* events);
    ~relay_service();  // stop()
    relay_service(const relay_service&) = delete;
    relay_service& operator=(const relay_service&) = delete;

    void start();  // starts the thread and the scheduler
    void submit(relay_request request);
    void pause();
    void resume();
    bool paused();
    void stop();

    // For tests and the CLI: the relay tables through this service's own connection.
    relay_db& db();

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace relaybait::relay
