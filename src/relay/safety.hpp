#pragma once
// THE relay safety layer. Every delivery passes through check_and_reserve(); nothing else in
// relaybait can put a row into relay_queue, and relay_service only ever sends queue rows.
// Rules and operators can only *ask* for a relay; no rule, flag or manual command lifts a cap.
//
// check_and_reserve() runs in ONE SQLite `BEGIN IMMEDIATE` transaction on the shared
// DATA/relaybait.db: the write lock is taken before the counters are read, so concurrent
// sessions, a CLI `relaybait relay ID` and several sensors on one database are serialised
// and can never exceed a cap. Counters are incremented only when the whole request is
// allowed (all-or-nothing), together with the identical-message digest, the queue rows and
// the decision row, in the same COMMIT (synchronous=FULL: a reservation survives a crash,
// so a restart cannot reset the count). Refusals are recorded in relay_decisions too.
//
// Unit of counting: one relayed copy = one (message, recipient) pair. A message to 3
// recipients uses 3 of the daily budget. Days are UTC dates. A reservation is never given
// back, even if the delivery later fails: the caps bound what the honeypot *tries* to send.
//
// Whose caps: the running server's AND this process's. `relaybait serve` publishes its own
// limits at start (published_limits.hpp: relay_published_limits, one row, overwritten by each
// start). check_and_reserve reads that row inside its transaction and applies, per cap, the
// stricter of the published value and the one this safety was constructed with: the smaller
// number, enabled only when both say so, test mode when either says so (and the queue row is
// then saved test_mode=1). So a CLI `relaybait relay ID` run without --config (built-in
// defaults), or with a config looser than the server's, books against the server's caps too.
// When nothing was published (no server ever started on the database), its own limits apply.
//
// Caps, checked in this order (the first that refuses is named in the decision):
//   disabled        relay.enabled = false in the config or in the published limits (kill switch)
//   paused          `relaybait relay pause` (relay_state.paused, read inside the transaction)
//   no_recipients / bad_recipient   nothing deliverable (no '@' or empty domain)
//   size            message bigger than max_size
//   recipients      more distinct recipients than max_recipients
//   identical       a message with the same sha256 was already reserved (ever)
//   daily           copies today + this request > daily
//   per_sender      per MAIL FROM address (canonical_address; "<>" for the null sender)
//   per_client_ip   per client network (client_ip_key: an IPv4 address, an IPv6 /64)
//   per_recipient   per recipient address (canonical_address: the spellings SMTP and DNS
//                   make equal are one key: v@b.com, V@B.COM., "v"@b.com, "\v"@b.com, and
//                   the subaddresses v+tag@b.com; a provider's own aliases, such as Gmail's
//                   dots, are not folded: per_domain bounds those). Recipients of one request
//                   with the same key are one recipient: one queue row, one copy.
//   per_domain      per recipient domain (address_domain: lower-cased, trailing dots removed,
//                   an internationalised name as its A-label, so bücher.example and
//                   xn--bcher-kva.example are one domain)
//
// Each queue row records whether it was reserved in test mode (relay_queue.test_mode: this
// process's test mode OR the published one), so a row reserved in test mode is only ever
// delivered to the test server, even by a process whose config has test mode off
// (relay_service fails it when it has no test server).
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "relay/relay_db.hpp"

namespace relaybait::relay {

// Defaults: small on purpose. A probe check needs one delivery; a spammer testing a relay
// rarely sends more than a few probes a day, and every copy that leaves is mail sent on a
// criminal's behalf. 20/day matches the FOSR behaviour operators know; 3 per recipient lets
// a spammer's repeated probes to one mailbox succeed without making us a mailer for it;
// 10 per domain keeps a big provider (gmail.com) from seeing a burst from our IP.
struct relay_limits {
    bool enabled = true;
    unsigned daily = 20;
    unsigned per_recipient_daily = 3;
    unsigned per_sender_daily = 5;
    unsigned per_client_ip_daily = 5;
    unsigned per_domain_daily = 10;
    std::uint64_t max_size = 1u << 20;  // 1 MiB: probes are tiny; spam runs are not relayed
    unsigned max_recipients = 5;
    // Test mode (safety invariant 3): every relay goes to test_server / test_recipient.
    bool test_mode = false;
    std::string test_server;     // "host:port" (IPv6: "[::1]:2525")
    std::string test_recipient;  // the operator's address
};

struct relay_request {
    std::string message_id;   // the store's message id (or queue id): what `relay ID` names
    std::string file;         // the stored Maildir file (absolute, or relative to the data dir)
    std::string sha256;       // hex sha256 of the message minus relaybait's trace headers
                              // (= store's message_record::sha256); relay_service fills it if empty
    std::string mail_from;
    std::vector<std::string> recipients;
    std::string client_ip;
    std::uint64_t size = 0;   // bytes of the message minus trace headers
    bool manual = false;      // an operator's `relaybait relay ID`: same caps
};

struct decision {
    bool allowed = false;
    std::string cap;  // the refusing cap's name, empty when allowed
    std::int64_t decision_id = 0;
    std::vector<std::int64_t> queue_ids;  // one per recipient, when allowed
    std::vector<std::string> recipients;  // normalised, deduplicated (the ones queued)
};

class safety {
public:
    // Opens its own connection on `db_file` (applying the relay migrations).
    safety(const std::filesystem::path& db_file, relay_limits limits);

    decision check_and_reserve(const relay_request& request,
                               sys_time now = std::chrono::system_clock::now());

    void set_paused(bool paused) { db_.set_paused(paused); }
    bool paused() { return db_.paused(); }
    // This process's own limits, as constructed; each check combines them with the published
    // ones (effective_limits(limits(), read_published_limits(db())) is what it applies).
    const relay_limits& limits() const { return limits_; }
    relay_db& db() { return db_; }

    // Today's (or `day`'s) relayed copies: the daily counter.
    std::uint64_t daily_count(sys_time now = std::chrono::system_clock::now()) {
        return db_.counter(utc_day(now), "daily", "");
    }

private:
    relay_db db_;
    relay_limits limits_;
};

// Helpers (public for tests and the service).
// The domain as DNS knows it: lower-cased, without trailing dots, a U-label as its A-label
// (IDNA2008, UTS #46 mapping, which also turns the ideographic and fullwidth full stops into
// '.'). "" when there is none, when it is not a valid IDN, or when it is not a DNS name
// (smtp::syntax::valid_hostname: an empty label, a character other than letters, digits, '-'
// and '_', a label that starts or ends with '-', an all-numeric name, an address literal):
// such a recipient is refused (bad_recipient).
std::string address_domain(std::string_view address);
// What the per-recipient and per-sender caps count: the address lower-cased, the domain
// as address_domain() gives it, a quoted local part unquoted and unescaped ("a\"b"@x ->
// a"b@x), a subaddress dropped (v+tag@x -> v@x). An address without '@' is only lower-cased.
std::string canonical_address(std::string_view address);
// What the per-client-IP cap counts: the client's network (common/client_network.hpp: an IPv4
// address, an IPv6 /64, so that one subscriber cannot pick a new address per probe). Text that
// is not an address is kept (lower-cased).
std::string client_ip_key(std::string_view client_ip);
std::string json_string_array(const std::vector<std::string>& items);

}  // namespace relaybait::relay
