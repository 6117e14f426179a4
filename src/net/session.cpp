#include "net/session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

#include "events/event_log.hpp"
#include "events/json_safe.hpp"
#include "net/message_writer.hpp"
#include "net/relay_recovery.hpp"
#include "net/session_rules.hpp"
#include "net/trace_headers.hpp"
#include "net/transport.hpp"

namespace relaybait::net {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace json = boost::json;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);
// A session stops reading while this much of its message is still waiting for the disk.
constexpr std::uint64_t max_unwritten_message_bytes = 4u << 20;
// Time a client gets to read our last reply once its session timed out.
constexpr std::chrono::seconds farewell_timeout{10};

std::string endpoint_ip(const tcp::endpoint& endpoint) {
    auto address = endpoint.address();
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
    }
    return address.to_string();
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds delay) {
    asio::steady_timer timer(co_await asio::this_coro::executor, delay);
    co_await timer.async_wait(tuple_awaitable);
}

// A session's tarpit and error sleeps are cut into slices this long, so that a deadline that
// passes meanwhile ends the session within one slice (the registry's sweeper can only cancel
// socket operations, and a sleeping session has none).
constexpr std::chrono::milliseconds pause_slice{250};

// Waits for the store's completion callback, which runs on a store thread, back on the
// session's executor.
asio::awaitable<store::commit_result> commit_message(store::ingest& ingest,
                                                     const std::shared_ptr<store::pending_message>& message,
                                                     store::message_record record, store::classifier classify) {
    auto executor = co_await asio::this_coro::executor;
    co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(store::commit_result)>(
        [&](auto handler) {
            auto shared = std::make_shared<decltype(handler)>(std::move(handler));
            ingest.commit(
                message, std::move(record),
                [shared, executor](store::commit_result result) {
                    asio::post(executor, [shared, result = std::move(result)]() mutable { (*shared)(std::move(result)); });
                },
                std::move(classify));
        },
        asio::use_awaitable);
}

class session {
public:
    session(app_context& app, tcp::socket socket, const config::listener_config& listener)
        : app_(app),
          transport_(std::move(socket)),
          writer_(app.ingest, [this](const smtp::envelope& envelope) { return begin_message(envelope); }),
          rules_(app.rules, app.settings.rules.max_scan_bytes,
                 [this](rules::hook_point hook, const rules::rule& rule) { rule_matched(hook, rule); }) {
        facts_.listener = listener.kind;
        facts_.local_hostname = app.settings.hostname;
        boost::system::error_code ec;
        const auto peer = transport_.socket().remote_endpoint(ec);
        const auto local = transport_.socket().local_endpoint(ec);
        facts_.peer_ip = endpoint_ip(peer);
        facts_.peer_port = peer.port();
        facts_.local_ip = endpoint_ip(local);
        facts_.local_port = local.port();
        facts_.tls_active = listener.kind == smtp::listener_kind::smtps;

        const std::string id = app.new_session_id();  // always 16 hex digits
        std::memcpy(id_.data(), id.data(), std::min(id.size(), id_.size()));
        started_at_ = std::chrono::system_clock::now();
    }

    // The session lives on the heap, owned by this one coroutine frame, which is also the one
    // an idle session waits in: an idle plain session holds this frame, co_spawn's and the
    // reactor's wait operation, nothing else (each coroutine frame costs ~150 bytes of header
    // and promise before its locals).
    static asio::awaitable<void> run(std::unique_ptr<session> self) {
        session& s = *self;
        s.emit("session.connect");
        if (!s.app_.registry.admit(s.facts_.peer_ip)) {
            co_await s.refuse_busy();
            co_return;
        }
        s.registration_ = s.app_.registry.add(s.facts_.peer_ip, [&s] { s.expire(); });
        s.started_ = session_registry::clock::now();
        // From the first byte: a connect tarpit and the banner's write are bounded too.
        s.arm_deadline(s.app_.settings.limits.idle_timeout);
        try {
            const bool opened = co_await s.open();
            // A tarpit or banner past the deadline (not a session a rule already ended).
            if (!opened && (s.timed_out_ || s.expired_) && s.outcome_.empty()) co_await s.end_on_deadline();
            while (opened) {
                // The deadline covers the wait for input and the serving of it: one that passed
                // while a burst of pipelined commands was answered (each reply slowed down by
                // the error sleep, say) ends the session like an idle client.
                if (s.timed_out_ || s.expired_) {
                    co_await s.end_on_deadline();
                    break;
                }
                s.arm_deadline(s.app_.settings.limits.idle_timeout);
                // An idle session keeps no reply or observation buffers (the last reply's text
                // would otherwise stay allocated until the next command).
                s.output_ = smtp::output{};
                boost::system::error_code ec;
                std::span<const char> input;
                if (s.transport_.tls_active()) {
                    input = co_await s.transport_.read_some(ec);
                } else {
                    // Inline rather than transport::read_some: no coroutine frame below this one.
                    for (;;) {
                        input = s.transport_.try_read(ec);
                        if (ec != asio::error::would_block && ec != asio::error::try_again) break;
                        auto [wait_error] = co_await s.transport_.wait_readable();
                        if (wait_error) {
                            ec = wait_error;
                            input = {};
                            break;
                        }
                    }
                }
                if (ec || input.empty()) {
                    co_await s.end_on_read_error(ec);
                    break;
                }
                s.bytes_in_ += input.size();
                s.arm_deadline(s.app_.settings.limits.idle_timeout);  // the client was active: serving it gets a full idle period
                const bool open = co_await s.process(std::string_view(input.data(), input.size()));
                if (!open) {
                    if (s.timed_out_ || s.expired_) co_await s.end_on_deadline();
                    break;
                }
            }
        } catch (const std::exception& e) {
            spdlog::error("session {}: {}", s.id(), e.what());
            s.outcome("error");
            s.close(true);
        }
        s.app_.registry.remove(*s.registration_);
        s.finish();
    }

private:
    // --- the conversation --------------------------------------------------------------
    // TLS on smtps, the engine, the banner; false = the session is over.
    asio::awaitable<bool> open() {
        if (facts_.tls_active) {
            const bool established = co_await handshake();
            if (!established) co_return false;
        }
        engine_.emplace(app_.engine, facts_, writer_, app_.environment);
        engine_->set_policy(&rules_);
        if (facts_.tls_active) {
            smtp::output ignored;
            engine_->tls_started(*transport_.tls_info(), ignored);
        }
        const bool greeted = co_await greet();
        co_return greeted;
    }

    // The connect hook decides before the banner: a 4xx/5xx (or 421) is sent instead of it and
    // the connection closes; a 2xx replaces the banner; a tarpit delays it.
    asio::awaitable<bool> greet() {
        const auto verdict = rules_.at_connect(facts_);
        const bool waited = co_await pause(verdict.delay);
        if (!waited) co_return false;
        std::string banner = engine_->greeting();
        const bool refusal = !verdict.reply.empty() && (verdict.reply[0] == '4' || verdict.reply[0] == '5');
        if (verdict.what != smtp::stage_verdict::kind::proceed && !verdict.reply.empty()) banner = verdict.reply + "\r\n";
        note('S', banner);
        const bool sent = co_await send(banner);
        if (!sent) co_return false;
        if (refusal || verdict.what == smtp::stage_verdict::kind::disconnect) {
            outcome("rule");
            close(false);
            co_return false;
        }
        co_return true;
    }

    // Feeds input to the engine until it is consumed or the session ends; false = closed.
    asio::awaitable<bool> process(std::string_view input) {
        std::string backlog;  // input left over while a request is served (owned: the read buffer is shared)
        for (;;) {
            output_.clear();
            engine_->feed(input, output_);
            backlog.assign(input.substr(std::min(output_.consumed, input.size())));
            const auto next = output_.next;
            const bool abort = output_.abort_connection;
            const bool flushed = co_await flush_output();
            if (!flushed) co_return false;

            // Plain if/else rather than a switch: g++ 12 miscompiles co_await inside switch cases.
            if (next == smtp::request::close) {
                close(abort);
                co_return false;
            }
            if (next == smtp::request::start_tls) {
                const bool upgraded = co_await upgrade_to_tls();  // pipelined plaintext is dropped (RFC 3207)
                co_return upgraded;
            }
            if (next == smtp::request::commit_message) {
                const bool committed = co_await commit();
                if (!committed) co_return false;
            } else {
                const bool drained = co_await wait_for_disk();
                co_return drained;
            }
            input = backlog;
            if (input.empty()) co_return true;
        }
    }

    asio::awaitable<bool> upgrade_to_tls() {
        const bool established = co_await handshake();
        if (!established) co_return false;
        output_.clear();
        engine_->tls_started(*transport_.tls_info(), output_);
        const bool flushed = co_await flush_output();
        co_return flushed;
    }

    asio::awaitable<bool> handshake() {
        arm_deadline(app_.settings.limits.idle_timeout);
        boost::system::error_code ec;
        co_await transport_.start_tls(app_.tls, ec);
        if (ec) {
            note('I', "TLS handshake failed: " + ec.message());
            outcome("tls_failed");
            close(true);
            co_return false;
        }
        const auto tls = *transport_.tls_info();
        rules_.tls_started(tls.version);
        tls_established_ = true;
        note('I', "TLS established: " + tls.version + " " + tls.cipher);
        emit("tls.established", {{"tls_version", tls.version}, {"tls_cipher", tls.cipher}});
        co_return true;
    }

    asio::awaitable<bool> commit() {
        const auto size = writer_.message_bytes();
        auto message = writer_.finish();
        if (!message) co_return true;
        auto record = message_record();
        auto classify = rules_.classifier(facts_, engine_->current_envelope(), size);
        const auto result = co_await commit_message(app_.ingest, message, record, std::move(classify));
        output_.clear();
        session_rules::data_outcome decided;
        if (result.ok) {
            ++messages_;
            decided = rules_.after_commit(result.classification);
            engine_->message_committed(record.queue_id, decided.verdict, output_);
            emit_received(record, result);
        } else {
            spdlog::error("session {}: message {} not stored: {}", id(), record.queue_id, result.error);
            engine_->message_failed(output_);
        }
        // A stored message gets its reply even when the deadline passes before it is written
        // (the client would retry, and the message be kept twice): after its tarpit, within the
        // farewell time.
        answering_commit_ = result.ok;
        if (answering_commit_ && timed_out_ && !expired_) arm_deadline(farewell_timeout);
        const bool flushed = co_await flush_output();
        answering_commit_ = false;
        // After the reply: the relay runs on its own thread and never holds up this session.
        if (result.ok && decided.relay) request_relay(record, result);
        co_return flushed;
    }

    void emit_received(const store::message_record& record, const store::commit_result& result) {
        json::object fields{{"queue_id", record.queue_id},
                            {"message_id", result.message_id},
                            {"mail_from", events::to_json_safe(record.mail_from)},
                            {"rcpt_to", recipients_json(record.recipients)},
                            {"maildir_path", result.maildir_path},
                            {"size", result.size},
                            {"sha256", result.sha256}};
        const auto& decided = result.classification;
        if (!decided.rule.empty()) {
            fields["rule"] = decided.rule;
            fields["kind"] = decided.kind;
        }
        if (!decided.folder.empty()) fields["folder"] = decided.folder;
        if (!decided.tags.empty()) fields["tags"] = recipients_json(decided.tags);
        if (decided.drop) fields["dropped"] = true;
        emit("message.received", std::move(fields));
    }

    // A rule cannot both drop and relay (refused when the rules load), so the file is there.
    void request_relay(store::message_record record, const store::commit_result& result) {
        record.id = result.message_id;
        record.sha256 = result.sha256;
        record.size = result.size;
        app_.relay->submit(relay_request_for(record, app_.settings.data_dir / result.maildir_path));
    }

    void rule_matched(rules::hook_point hook, const rules::rule& rule) {
        json::array tags;
        for (const auto& tag : rule.actions.tags) tags.emplace_back(tag);
        json::object fields{{"hook", rules::to_string(hook)}, {"rule", rule.name}, {"kind", rule.kind}, {"tags", std::move(tags)}};
        if (hook == rules::hook_point::data) fields["queue_id"] = pending_queue_id_;
        if (hook != rules::hook_point::data) note('I', "rule " + rule.name + " matched at " + std::string(rules::to_string(hook)));
        emit("rule.match", std::move(fields));
    }

    // Backpressure: a fast client cannot queue more than a few MB of its message in memory.
    asio::awaitable<bool> wait_for_disk() {
        while (writer_.backlog() > max_unwritten_message_bytes) {
            if (expired_ || timed_out_) co_return false;
            co_await sleep_for(std::chrono::milliseconds(2));
        }
        co_return true;
    }

    // --- output ------------------------------------------------------------------------
    asio::awaitable<bool> flush_output() {
        record_observations();
        std::string batch;
        for (auto& reply : output_.replies) {
            if (reply.delay_before.count() > 0) {
                if (!batch.empty()) {
                    const bool sent = co_await send(std::exchange(batch, {}));
                    if (!sent) co_return false;
                }
                const bool waited = co_await pause(reply.delay_before);
                if (!waited) co_return false;
            }
            note('S', reply.text);
            batch += reply.text;
        }
        if (batch.empty()) co_return true;
        const bool sent = co_await send(std::move(batch));
        co_return sent;
    }

    // Nothing more is sent once the deadline has passed, but the 421 that says so: a client
    // that stops reading cannot keep a session (and its slot) alive with a blocked write.
    // Each reply written restarts the idle deadline (Postfix's smtpd_timeout is per read or write:
    // a rule's tarpit on each of many pipelined commands is the server's pace, not an idle
    // client); the session deadline caps it whatever the pace.
    asio::awaitable<bool> send(std::string bytes) {
        if (expired_ || (timed_out_ && !saying_farewell_ && !answering_commit_)) co_return false;
        boost::system::error_code ec;
        co_await transport_.write(bytes, ec);
        bytes_out_ += bytes.size();
        if (ec) {
            if (!expired_) outcome(timed_out_ ? "timeout" : "disconnect");
            co_return false;
        }
        if (!timed_out_) arm_deadline(app_.settings.limits.idle_timeout);
        co_return true;
    }

    // A tarpit or error sleep; false when the deadline passed meanwhile (the session ends).
    // The reply to a stored message is the exception: its tarpit (at most 60 s) is served whole,
    // and a deadline that passed meanwhile leaves the farewell time for writing it.
    asio::awaitable<bool> pause(std::chrono::milliseconds delay) {
        if (answering_commit_) {
            if (delay.count() > 0) co_await sleep_for(delay);
            if (timed_out_ && !expired_) arm_deadline(farewell_timeout);
            co_return !expired_;
        }
        while (delay.count() > 0 && !timed_out_ && !expired_) {
            const auto slice = std::min(delay, pause_slice);
            co_await sleep_for(slice);
            delay -= slice;
        }
        co_return !timed_out_ && !expired_;
    }

    asio::awaitable<void> refuse_busy() {
        smtp::engine probe(app_.engine, facts_, writer_, app_.environment);
        note('S', probe.busy_reply());
        outcome("busy");
        boost::system::error_code ec;
        if (!facts_.tls_active) co_await transport_.write(probe.busy_reply(), ec);
        close(false);
        finish();
    }

    asio::awaitable<void> end_on_read_error(const boost::system::error_code& ec) {
        if (timed_out_ || expired_) {
            co_await end_on_deadline();
        } else {
            outcome("disconnect");
            if (ec && ec != asio::error::eof) note('I', "read error: " + ec.message());
            close(false);
        }
    }

    // The deadline passed: the first time, Postfix's 421, with a short deadline of its own for
    // the client to read it; the second time, or at shutdown, the connection just goes.
    asio::awaitable<void> end_on_deadline() {
        if (timed_out_ && !expired_ && !saying_farewell_ && engine_) {
            outcome("timeout");
            note('I', "timeout");
            saying_farewell_ = true;
            arm_deadline(farewell_timeout);
            co_await send(engine_->timeout_reply());
            close(false);
        } else {
            outcome(app_.stopping ? "shutdown" : "timeout");
            close(true);
        }
    }

    // --- deadlines -----------------------------------------------------------------------
    void arm_deadline(std::chrono::seconds idle) {
        if (!registration_) return;
        const auto session_end = started_ + app_.settings.limits.session_timeout;
        auto deadline = session_registry::clock::now() + idle;
        if (!timed_out_ && deadline > session_end) deadline = session_end;
        app_.registry.set_deadline(*registration_, deadline);
        (*registration_)->expired = false;
    }

    // Called by the registry's sweeper: first a polite 421, the second time the socket goes.
    void expire() {
        if (!timed_out_ && !app_.stopping) {
            timed_out_ = true;
        } else {
            expired_ = true;
        }
        transport_.cancel();
    }

    void close(bool reset) {
        transport_.close(reset);
    }

    // --- records -----------------------------------------------------------------------
    std::string begin_message(const smtp::envelope& envelope) {
        pending_queue_id_ = app_.queue_ids.next(std::chrono::system_clock::now());
        return make_trace_headers(trace_facts{facts_, envelope, engine_->tls(), pending_queue_id_, id(),
                                              std::chrono::system_clock::now()});
    }

    store::message_record message_record() {
        const auto& envelope = engine_->current_envelope();
        store::message_record record;
        record.queue_id = pending_queue_id_;
        record.session_id = id();
        record.received_at = events::iso8601_utc_now();
        record.peer_ip = facts_.peer_ip;
        record.peer_port = facts_.peer_port;
        record.listener = smtp::to_string(facts_.listener);
        record.helo_name = envelope.helo_name;
        record.mail_from = envelope.mail_from;
        record.mail_parameters = envelope.mail_parameters;
        for (const auto& rcpt : envelope.recipients) record.recipients.push_back(rcpt.address);
        if (envelope.auth && envelope.auth->accepted) record.auth_username = envelope.auth->username;
        if (const auto tls = current_tls()) {
            record.tls_version = tls->version;
            record.tls_cipher = tls->cipher;
        }
        record.via_bdat = envelope.via_bdat;
        return record;
    }

    void record_observations() {
        for (const auto& seen : output_.observations) {
            using kind = smtp::observation::kind;
            switch (seen.what) {
                case kind::command:
                    ++commands_;
                    note('C', seen.text);
                    break;
                case kind::helo:
                    helo_verb_ = engine_->current_envelope().helo_verb;
                    helo_name_ = seen.text;
                    emit("smtp.helo", {{"verb", helo_verb_}, {"helo", events::to_json_safe(seen.text)}});
                    break;
                case kind::auth:
                    record_credential();
                    break;
                case kind::mail_from:
                    emit("smtp.mail_from", {{"address", events::to_json_safe(seen.text)}});
                    break;
                case kind::rcpt_to:
                    emit("smtp.rcpt_to", {{"address", events::to_json_safe(seen.text)}});
                    break;
                case kind::http_probe:
                    outcome("http_probe");
                    emit("http.probe", {{"request", events::to_json_safe(seen.text)}});
                    break;
                case kind::limit_hit:
                    outcome("limit");
                    emit("session.limit", {{"limit", events::to_json_safe(seen.text)}});
                    break;
                case kind::protocol_error:
                    ++errors_;
                    break;
                case kind::policy:
                    emit("policy.verdict", {{"stage", seen.text}});
                    break;
                case kind::message_begin:
                case kind::tls_requested:
                    break;
            }
        }
    }

    void record_credential() {
        const auto& attempts = engine_->credentials();
        if (attempts.empty()) return;
        const auto& attempt = attempts.back();
        store::credential_record credential;
        credential.session_id = id();
        credential.peer_ip = facts_.peer_ip;
        credential.at = events::iso8601_utc_now();
        credential.listener = smtp::to_string(facts_.listener);
        credential.mechanism = attempt.mechanism;
        credential.authzid = attempt.authzid;
        credential.username = attempt.username;
        credential.password = attempt.password;
        credential.challenge = attempt.challenge;
        credential.raw = attempt.raw;
        credential.accepted = attempt.accepted;
        emit("auth.captured", {{"mechanism", attempt.mechanism},
                               {"username", events::to_json_safe(attempt.username)},
                               {"password", events::to_json_safe(attempt.password)},
                               {"accepted", attempt.accepted}});
        app_.ingest.record_credential(std::move(credential));
    }

    // The transcript is kept compact while the session lives: one string of entries
    //   [8 bytes: microseconds since the epoch][1 byte: direction][4 bytes: length][text]
    // (a vector of {ISO timestamp, direction, text} cost ~120 bytes and 2-3 heap blocks a line);
    // finish() expands it into store::session_record::transcript, timestamps formatted then.
    void note(char direction, std::string_view text) {
        if (transcript_truncated_) return;
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
        if (transcript_bytes_ + text.size() > app_.settings.limits.transcript_bytes) {
            transcript_truncated_ = true;
            return;
        }
        transcript_bytes_ += text.size();
        const std::int64_t at = std::chrono::duration_cast<std::chrono::microseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
        const auto length = static_cast<std::uint32_t>(text.size());
        char head[transcript_head];
        std::memcpy(head, &at, sizeof at);
        head[sizeof at] = direction;
        std::memcpy(head + sizeof at + 1, &length, sizeof length);
        const std::size_t needed = transcript_.size() + sizeof head + text.size();
        if (needed > transcript_.capacity()) {
            // Most sessions stay small: up to 1 KB grow in 64-byte steps (a copy of at most 1 KB
            // each), then by half (std::string::reserve alone would double).
            const std::size_t capacity = transcript_.capacity();
            const std::size_t target = needed <= 1024 ? (needed + 63) / 64 * 64 : std::max(needed, capacity + capacity / 2);
            std::string grown;
            grown.reserve(target);
            grown.append(transcript_);
            transcript_.swap(grown);
        }
        transcript_.append(head, sizeof head);
        transcript_.append(text);
    }

    std::vector<store::transcript_line> expand_transcript() const {
        std::vector<store::transcript_line> lines;
        std::string_view rest = transcript_;
        while (rest.size() >= transcript_head) {
            std::int64_t at = 0;
            std::uint32_t length = 0;
            std::memcpy(&at, rest.data(), sizeof at);
            const char direction = rest[sizeof at];
            std::memcpy(&length, rest.data() + sizeof at + 1, sizeof length);
            rest.remove_prefix(transcript_head);
            const std::string_view text = rest.substr(0, length);
            rest.remove_prefix(text.size());
            lines.push_back({events::iso8601_utc(std::chrono::system_clock::time_point(std::chrono::microseconds(at))),
                             direction, std::string(text)});
        }
        return lines;
    }

    void outcome(std::string_view what) {  // always a string literal
        if (outcome_.empty()) outcome_ = what;
    }

    std::string_view id() const { return {id_.data(), id_.size()}; }

    std::optional<smtp::tls_facts> current_tls() const {
        if (!tls_established_) return std::nullopt;
        return transport_.tls_info();
    }

    // The event fields are built per event from the session's facts instead of being kept
    // as a second copy of them for the whole session.
    void emit(std::string_view eventid, json::object fields = {}) {
        const events::session_fields session{std::string(id()),  app_.sensor,       facts_.peer_ip,
                                             facts_.peer_port,   facts_.local_ip,   facts_.local_port,
                                             std::string(smtp::to_string(facts_.listener))};
        app_.events.emit(eventid, session, std::move(fields));
    }

    static json::array recipients_json(const std::vector<std::string>& recipients) {
        json::array all;
        for (const auto& rcpt : recipients) all.emplace_back(events::to_json_safe(rcpt));
        return all;
    }

    // The session's row is built here, once, from what the session kept (facts_, the compact
    // transcript, counters) instead of living as a second copy for the whole session.
    void finish() {
        writer_.discard();  // a message still open when the session ends was never acknowledged
        if (engine_) {
            errors_ = std::max<std::uint32_t>(errors_, engine_->errors());
            if (outcome_.empty()) outcome_ = "quit";
        }
        store::session_record record;
        record.id = id();
        record.sensor = app_.sensor;
        record.listener = smtp::to_string(facts_.listener);
        record.peer_ip = facts_.peer_ip;
        record.peer_port = facts_.peer_port;
        record.local_ip = facts_.local_ip;
        record.local_port = facts_.local_port;
        record.started_at = events::iso8601_utc(started_at_);
        record.ended_at = events::iso8601_utc_now();
        record.helo_verb = std::move(helo_verb_);
        record.helo_name = std::move(helo_name_);
        if (const auto tls = current_tls()) {
            record.tls_version = tls->version;
            record.tls_cipher = tls->cipher;
        }
        record.transcript = expand_transcript();
        std::string().swap(transcript_);
        record.transcript_truncated = transcript_truncated_;
        record.bytes_in = bytes_in_;
        record.bytes_out = bytes_out_;
        record.commands = commands_;
        record.errors = errors_;
        record.messages = messages_;
        record.outcome = outcome_;
        emit("session.close", {{"outcome", record.outcome},
                               {"duration", std::chrono::duration<double>(session_registry::clock::now() - started_).count()},
                               {"messages", record.messages},
                               {"commands", record.commands},
                               {"bytes_in", record.bytes_in},
                               {"bytes_out", record.bytes_out}});
        app_.ingest.record_session(std::move(record));
    }

    app_context& app_;
    transport transport_;
    message_writer writer_;
    session_rules rules_;
    smtp::connection_facts facts_;
    std::optional<smtp::engine> engine_;
    smtp::output output_;
    std::optional<session_registry::handle> registration_;
    session_registry::clock::time_point started_ = session_registry::clock::now();
    std::chrono::system_clock::time_point started_at_;
    // What becomes the session's row (see finish()); sensor, listener and addresses come from
    // app_ and facts_, TLS version and cipher from the transport.
    std::string transcript_;  // compact: see note()
    std::string helo_verb_;
    std::string helo_name_;
    std::string pending_queue_id_;
    std::string_view outcome_;  // a string literal (quit, timeout, ...); empty until decided
    std::uint64_t bytes_in_ = 0;
    std::uint64_t bytes_out_ = 0;
    std::uint32_t transcript_bytes_ = 0;
    std::uint32_t commands_ = 0;
    std::uint32_t errors_ = 0;
    std::uint32_t messages_ = 0;
    std::array<char, 16> id_{};  // 16 hex digits (app_context::new_session_id)
    bool transcript_truncated_ = false;
    bool tls_established_ = false;
    bool timed_out_ = false;  // the deadline passed once: answer 421 and close
    bool expired_ = false;    // the deadline passed twice, or shutdown: just close
    bool saying_farewell_ = false;  // the 421 after timed_out_ is being sent (its own deadline)
    bool answering_commit_ = false;  // the reply to a stored message is being written (see pause)
    static constexpr std::size_t transcript_head = 8 + 1 + 4;
};

}  // namespace

asio::awaitable<void> run_session(app_context& app, tcp::socket socket, const config::listener_config& listener) {
    return session::run(std::make_unique<session>(app, std::move(socket), listener));
}

}  // namespace relaybait::net
