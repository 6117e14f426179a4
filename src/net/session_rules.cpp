#include "net/session_rules.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>

#include "mime/message.hpp"
#include "rules/expr.hpp"

namespace relaybait::net {

namespace {

rules::hook_point hook_of(smtp::stage at) {
    if (at == smtp::stage::ehlo) return rules::hook_point::ehlo;
    if (at == smtp::stage::auth) return rules::hook_point::auth;
    if (at == smtp::stage::mail) return rules::hook_point::mail;
    return rules::hook_point::rcpt;
}

// What a matching rule's reply and tarpit make of the command's answer (421 always closes).
smtp::stage_verdict reply_verdict(const rules::actions& actions) {
    smtp::stage_verdict verdict;
    verdict.delay = actions.tarpit;
    if (actions.reply) {
        verdict.what = actions.reply->code == 421 ? smtp::stage_verdict::kind::disconnect : smtp::stage_verdict::kind::reply;
        verdict.reply = std::to_string(actions.reply->code) + " " + actions.reply->text;
    }
    return verdict;
}

void add_tags(std::vector<std::string>& into, const std::vector<std::string>& tags) {
    for (const auto& tag : tags)
        if (std::find(into.begin(), into.end(), tag) == into.end()) into.push_back(tag);
}

}  // namespace

std::optional<std::string> left_out_report::due(std::uint64_t left_out, clock::time_point now) {
    if (left_out <= reported_.load(std::memory_order_relaxed)) return std::nullopt;
    const clock::rep at = now.time_since_epoch().count();
    clock::rep next = next_.load(std::memory_order_relaxed);
    if (at < next) return std::nullopt;
    // One thread writes the warning; the others see the next time moved on.
    if (!next_.compare_exchange_strong(next, at + every_.count(), std::memory_order_relaxed)) return std::nullopt;
    const std::uint64_t before = reported_.exchange(left_out, std::memory_order_relaxed);
    return "rules: " + std::to_string(left_out) + " comparison" + (left_out == 1 ? "" : "s") +
           " since start left session values out at their bounds (" + std::to_string(left_out > before ? left_out - before : 0) +
           " since the last warning): a comparison uses at most " + std::to_string(rules::max_dynamic_needles) + " needles and " +
           std::to_string(rules::max_dynamic_needle_bytes / 1024) +
           " KiB of them, and the values past that (a client's later recipients, say) were not looked for";
}

void left_out_report::check() {
    const std::uint64_t left_out = rules::dynamic_values_left_out();
    if (left_out <= reported_.load(std::memory_order_relaxed)) return;  // the usual case
    if (auto warning = due(left_out, clock::now())) spdlog::warn("{}", *warning);
}

left_out_report& left_out_report::server() {
    static left_out_report report;
    return report;
}

session_rules::session_rules(const rules::rule_store& store, std::uint64_t max_scan_bytes, match_observer observer,
                             left_out_report& left_out)
    : store_(store), max_scan_bytes_(max_scan_bytes), observer_(std::move(observer)), left_out_(&left_out) {}

smtp::stage_verdict session_rules::at_connect(const smtp::connection_facts& facts) {
    const auto ctx = base_context(rules::hook_point::connect, facts, smtp::envelope{});
    const auto current = store_.current();
    const rules::rule* match = current->first_match(ctx);
    left_out_->check();
    return verdict_of(rules::hook_point::connect, match);
}

smtp::stage_verdict session_rules::decide(smtp::stage at, const smtp::connection_facts& facts, const smtp::envelope& env,
                                          const std::optional<smtp::credential>& auth, std::string_view argument) {
    const auto hook = hook_of(at);
    auto ctx = base_context(hook, facts, env);
    if (at == smtp::stage::ehlo) ctx.helo = std::string(argument);
    if (at == smtp::stage::auth && auth && auth->accepted) {
        ctx.auth_user = auth->username;
        ctx.auth_password = auth->password;
    }
    if (at == smtp::stage::mail) ctx.mail_from = std::string(argument);
    if (at == smtp::stage::rcpt) ctx.rcpt_to.emplace_back(argument);
    const auto current = store_.current();
    const rules::rule* match = current->first_match(ctx);
    left_out_->check();
    return verdict_of(hook, match);
}

store::classifier session_rules::classifier(const smtp::connection_facts& facts, const smtp::envelope& env,
                                            std::uint64_t size) {
    data_rules_ = store_.current();
    auto ctx = base_context(rules::hook_point::data, facts, env);
    ctx.size = size;
    store::classification earlier{folder_, tags_, rule_, kind_, drop_};
    store::classifier result;
    result.max_bytes = max_scan_bytes_;
    result.classify = [rules = data_rules_, ctx = std::move(ctx), earlier = std::move(earlier), left_out = left_out_](
                          std::string_view message, bool) mutable -> store::classification {
        const auto parsed = mime::parse(message);
        ctx.message = &parsed;
        const rules::rule* match = rules->first_match(ctx);
        left_out->check();
        if (match == nullptr) return earlier;
        store::classification decided;
        decided.folder = match->actions.folder.value_or(earlier.folder);
        decided.tags = earlier.tags;
        add_tags(decided.tags, match->actions.tags);
        decided.rule = match->name;
        decided.kind = match->kind;
        decided.drop = match->actions.drop;
        decided.relay = match->actions.relay;
        return decided;
    };
    return result;
}

session_rules::data_outcome session_rules::after_commit(const store::classification& applied) const {
    data_outcome outcome;
    if (applied.rule.empty() || !data_rules_) return outcome;
    const rules::rule* match = data_rules_->find(applied.rule);
    if (match == nullptr || match->hook != rules::hook_point::data) return outcome;  // decided by an earlier hook
    if (observer_) observer_(rules::hook_point::data, *match);
    outcome.relay = match->actions.relay;
    outcome.verdict = reply_verdict(match->actions);
    return outcome;
}

rules::context session_rules::base_context(rules::hook_point hook, const smtp::connection_facts& facts,
                                           const smtp::envelope& env) const {
    rules::context ctx;
    ctx.hook = hook;
    ctx.client_ip = facts.peer_ip;
    ctx.listener = std::string(smtp::to_string(facts.listener));
    ctx.tls = facts.tls_active || !tls_version_.empty();
    ctx.tls_version = tls_version_;
    ctx.helo = env.helo_name;
    if (env.auth && env.auth->accepted) {
        ctx.auth_user = env.auth->username;
        ctx.auth_password = env.auth->password;
    }
    ctx.mail_from = env.mail_from;
    ctx.rcpt_to.reserve(env.recipients.size() + 1);
    for (const auto& rcpt : env.recipients) ctx.rcpt_to.push_back(rcpt.address);
    return ctx;
}

smtp::stage_verdict session_rules::verdict_of(rules::hook_point hook, const rules::rule* match) {
    if (match == nullptr) return {};
    if (observer_) observer_(hook, *match);
    const auto& actions = match->actions;
    add_tags(tags_, actions.tags);
    if (actions.folder) folder_ = *actions.folder;
    if (actions.drop) drop_ = true;
    rule_ = match->name;
    kind_ = match->kind;
    return reply_verdict(actions);
}

}  // namespace relaybait::net
