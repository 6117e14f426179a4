#pragma once
// The rule engine at the hooks of one session, like Haraka's hooks: the session asks at
// connect (before the banner), the engine at EHLO/AUTH/MAIL/RCPT (stage_policy), the store at
// DATA end (a classifier run on a store thread, before the message is made durable). At each
// hook the first matching enabled rule decides (rules::rule_set::first_match).
//
// What a match does:
//   reply      replaces the normal reply; a 4xx/5xx refuses the command (at connect: is sent
//              instead of the banner and the connection closes; 421 always closes)
//   tarpit     delays that reply
//   folder, tags, drop   apply to the message of a data rule; set by an earlier hook they
//              apply to the session's later messages unless a data rule decides
//   relay      only from a data rule, and only ever as a request to relay::relay_service,
//              whose caps no rule can lift
// Every match is reported to the observer (the session turns it into a rule.match event).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rules/rules.hpp"
#include "smtp/engine.hpp"
#include "store/ingest.hpp"

namespace relaybait::net {

// The rules engine counts, process-wide, the comparisons that left session values out at its
// bounds (rules::dynamic_values_left_out(): a client's thousand recipients with encoded(), say);
// the engine has no log of its own. After each evaluation a session checks that count (one
// atomic load when it has not grown); when it grew, the server log gets a warning: at once the
// first time, then at most once per `every`, with the total since start.
class left_out_report {
public:
    using clock = std::chrono::steady_clock;
    explicit left_out_report(clock::duration every = std::chrono::minutes(10)) : every_(every) {}

    // The warning due at `now` for a count of `left_out`, if any (any thread).
    std::optional<std::string> due(std::uint64_t left_out, clock::time_point now);
    // due(rules::dynamic_values_left_out(), now) written to the server log (spdlog) as a warning.
    void check();
    // The server's: the count it watches is process-wide too.
    static left_out_report& server();

private:
    clock::duration every_;
    std::atomic<std::uint64_t> reported_{0};  // the count at the last warning
    std::atomic<clock::rep> next_{clock::time_point::min().time_since_epoch().count()};  // no warning before
};

class session_rules final : public smtp::stage_policy {
public:
    using match_observer = std::function<void(rules::hook_point, const rules::rule&)>;

    session_rules(const rules::rule_store& store, std::uint64_t max_scan_bytes, match_observer observer,
                  left_out_report& left_out = left_out_report::server());

    void tls_started(std::string version) { tls_version_ = std::move(version); }

    // Before the banner. proceed = greet as usual.
    smtp::stage_verdict at_connect(const smtp::connection_facts& facts);

    smtp::stage_verdict decide(smtp::stage at, const smtp::connection_facts& facts, const smtp::envelope& env,
                               const std::optional<smtp::credential>& auth, std::string_view argument) override;

    // For store::ingest::commit: evaluates the data rules on the message (on a store thread)
    // with the rules current now; after_commit() must then be given what the store applied.
    store::classifier classifier(const smtp::connection_facts& facts, const smtp::envelope& env, std::uint64_t size);

    struct data_outcome {
        smtp::stage_verdict verdict;  // proceed, or the rule's reply (+ tarpit)
        bool relay = false;           // the deciding data rule asks for a relay
    };
    data_outcome after_commit(const store::classification& applied) const;

private:
    rules::context base_context(rules::hook_point hook, const smtp::connection_facts& facts,
                                const smtp::envelope& env) const;
    smtp::stage_verdict verdict_of(rules::hook_point hook, const rules::rule* match);

    const rules::rule_store& store_;
    std::uint64_t max_scan_bytes_;
    match_observer observer_;
    left_out_report* left_out_;
    std::string tls_version_;
    std::shared_ptr<const rules::rule_set> data_rules_;  // the snapshot the last classifier used
    // Left by earlier hooks for the session's messages.
    std::string folder_;
    std::vector<std::string> tags_;
    bool drop_ = false;
    std::string rule_, kind_;
};

}  // namespace relaybait::net
