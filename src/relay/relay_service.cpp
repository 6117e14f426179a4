#include "relay/relay_service.hpp"

#include <ctime>

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

#include "common/text.hpp"
#include "events/event_log.hpp"
#include "relay/db_change_probe.hpp"
#include "relay/destination_policy.hpp"
#include "relay/message.hpp"
#include "store/database.hpp"
#include "store/ingest.hpp"
#include "store/maildir.hpp"
#include "store/message_admin.hpp"

namespace relaybait::relay {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {


std::optional<std::string> read_file(const fs::path& path, std::uint64_t max_size) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::string bytes;
    char chunk[65536];
    while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
        bytes.append(chunk, static_cast<std::size_t>(in.gcount()));
        if (bytes.size() > max_size) break;  // bounded; the caller compares with the cap
    }
    return bytes;
}

bool ends_with_domain(const std::string& domain, const std::string& entry) {
    const std::string e = text::lowercase(entry);
    return domain == e || (domain.size() > e.size() && domain.ends_with("." + e));
}

// "host:port", "[v6]:port", "host" (port 25).
std::pair<std::string, std::uint16_t> split_host_port(const std::string& text) {
    std::string host = text;
    std::uint16_t port = 25;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        host = text.substr(1, close == std::string::npos ? std::string::npos : close - 1);
        if (close != std::string::npos && close + 1 < text.size() && text[close + 1] == ':')
            port = static_cast<std::uint16_t>(std::stoi(text.substr(close + 2)));
    } else if (const auto colon = text.rfind(':'); colon != std::string::npos && text.find(':') == colon) {
        host = text.substr(0, colon);
        port = static_cast<std::uint16_t>(std::stoi(text.substr(colon + 1)));
    }
    return {host, port};
}

void write_all(int fd, std::string_view bytes, const fs::path& path) {
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "write " + path.string());
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace

struct relay_service::impl : std::enable_shared_from_this<impl> {
    relay_service_options options;
    store::ingest* ingest;
    events::event_log* events;
    safety guard;  // its own connection; used only on the relay thread (and pause/resume)
    // The rows this process is delivering (relay thread only). Their lease may run out while
    // a slow MX holds the delivery (or the wall clock may jump); claim_due must not hand them
    // out again here, or one reservation would be sent twice at once. Declared before io: a
    // delivery's frame, destroyed with io at shutdown, erases its row from it.
    std::set<std::int64_t> in_flight;
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    asio::steady_timer wake{io};
    std::thread thread;
    std::atomic<bool> stopping{false};
    std::atomic<bool> started{false};
    resolver dns;
    std::uint64_t log_sequence = 0;

    impl(relay_service_options o, store::ingest* i, events::event_log* e)
        : options(std::move(o)), ingest(i), events(e), guard(options.data_dir / "relaybait.db", options.limits),
          dns(io.get_executor(), options.dns) {
        options.client.helo_name = options.hostname;
        if (options.ports.empty()) options.ports = {25};
        if (options.delivery_deadline <= std::chrono::seconds::zero()) options.delivery_deadline = options.lease / 2;
    }

    relay_db& db() { return guard.db(); }

    void emit(const char* eventid, boost::json::object fields) {
        if (!events) return;
        boost::json::object event;
        event["eventid"] = eventid;
        event["sensor"] = options.sensor;
        for (auto& kv : fields) event.emplace(kv.key(), std::move(kv.value()));
        events->emit_raw(std::move(event));
    }

    fs::path resolve(const std::string& file) const {
        fs::path p(file);
        return p.is_absolute() ? p : options.data_dir / p;
    }

    // The message a row sends (trace block excluded), read at most max_size + 64 KiB of its
    // file: the caller still refuses one over max_size. From the file recorded at booking or,
    // when that cannot be read (the message was moved since: `rules apply` to a folder, an
    // IMAP client through Dovecot from new/ to cur/ with ":2,S"), from the file the store finds
    // for it now (store::locate_message_file: new/ or cur/ with flags, the row's current
    // folder; a path of another shape is refused). The row's message_id is the store's message
    // id (relay_request.message_id: the session, the start-up resubmission and `relay ID` all
    // give it; find_message_by_reference also takes a queue id). A message found that way is
    // sent only when its sha256 is the row's: the identical-message cap is keyed on it, so
    // something else (the file replaced, a row without a digest) is failed, never sent.
    // nullopt with `why` set when there is nothing to send; `temporary` when another try may
    // find it (the store busy or unreadable, a move between its rename and its row update).
    std::optional<std::string> message_of(const queue_row& row, std::string& why, bool& temporary) {
        temporary = false;
        const std::uint64_t read_cap = options.limits.max_size + (64u << 10);
        if (auto bytes = read_file(resolve(row.file), read_cap)) return std::string(strip_trace_block(*bytes));
        why = "message file missing: " + row.file;
        std::optional<fs::path> found;
        try {
            const auto record = store::database(options.data_dir / "relaybait.db", store::database::mode::read_only)
                                    .find_message_by_reference(row.message_id);
            if (!record) {
                why += "; no stored message " + row.message_id;
                return std::nullopt;
            }
            std::error_code lookup_error;
            found = store::locate_message_file(options.data_dir, *record, lookup_error);
            if (!found && lookup_error == std::errc::invalid_argument) {
                why += "; the store's path for message " + row.message_id + " is not one it writes: not sent";
                return std::nullopt;  // refused, not missing: no retry
            }
        } catch (const std::exception& e) {
            why += "; looking it up in the store failed: " + std::string(e.what());
            temporary = true;
            return std::nullopt;
        }
        if (!found) {
            why += "; the store has no file for message " + row.message_id + " (dropped, deleted or expunged)";
            temporary = true;  // or moved this instant: its row still names the old folder
            return std::nullopt;
        }
        auto bytes = read_file(*found, read_cap);
        if (!bytes) {
            why += "; cannot read " + found->string();
            temporary = true;
            return std::nullopt;
        }
        std::string message(strip_trace_block(*bytes));
        if (message.size() > options.limits.max_size) return message;  // the caller refuses it
        if (row.sha256.empty() || sha256_hex(message) != row.sha256) {
            why += "; " + found->string() + " is not the message booked (sha256 " +
                   (row.sha256.empty() ? std::string("not recorded") : "differs") + "): not sent";
            return std::nullopt;
        }
        spdlog::info("relay: queue row {}: message {} moved since it was queued; sending {}", row.id, row.message_id,
                     found->string());
        return message;
    }

    // ---- submit -----------------------------------------------------------------------
    void handle_submit(relay_request request) {
        try {
            if (request.sha256.empty() || request.size == 0) {
                // Read the stored file to hash exactly what would be relayed.
                auto bytes = read_file(resolve(request.file), options.limits.max_size + (64u << 10));
                if (bytes) {
                    const std::string_view message = strip_trace_block(*bytes);
                    if (request.sha256.empty()) request.sha256 = sha256_hex(message);
                    if (request.size == 0) request.size = message.size();
                }
            }
            const decision d = guard.check_and_reserve(request);
            boost::json::object f;
            f["message_id"] = request.message_id;
            f["mail_from"] = request.mail_from;
            boost::json::array rcpts;
            for (const auto& r : request.recipients) rcpts.emplace_back(r);
            f["recipients"] = std::move(rcpts);
            f["src_ip"] = request.client_ip;
            f["size"] = request.size;
            f["sha256"] = request.sha256;
            f["manual"] = request.manual;
            f["decision_id"] = d.decision_id;
            if (d.allowed) {
                boost::json::array ids;
                for (auto id : d.queue_ids) ids.emplace_back(id);
                f["queue_ids"] = std::move(ids);
                f["test_mode"] = options.limits.test_mode;
                emit("relay.queued", std::move(f));
                wake.cancel();
            } else {
                f["cap"] = d.cap;
                emit("relay.refused", std::move(f));
            }
            // Refusals are not relays: a flood of refused probes must not cost a file rewrite each.
            if (d.allowed) update_daily_log(std::chrono::system_clock::now());
        } catch (const std::exception& e) {
            spdlog::error("relay: submit of message {} failed: {}", request.message_id, e.what());
            boost::json::object f;
            f["message_id"] = request.message_id;
            f["error"] = e.what();
            emit("relay.error", std::move(f));
        }
    }

    // ---- scheduler --------------------------------------------------------------------
    // Coroutines and posted handlers capture `this`, never a shared_ptr: they live in `io`,
    // a member, and are destroyed with it (a shared_ptr would make a cycle).
    // The queue is read when something may have changed it (a submission or resume here, a
    // write to the database by anyone: db_change_probe) or when a row it knows of falls due;
    // on an idle server a poll is only the probe's stat() calls.
    asio::awaitable<void> scheduler() {
        db_change_probe changes(options.data_dir / "relaybait.db");
        std::optional<std::int64_t> next_due;  // unix seconds, as of the last read of the queue
        bool woken = true;
        bool read_failed = false;  // the change that asked for it is spent: read again next time
        while (!stopping) {
            auto wait = options.poll_interval;
            try {
                const auto now = std::chrono::system_clock::now();
                const bool changed = changes.may_have_changed(now);  // before reading: a later write is seen next time
                const bool fell_due = next_due && *next_due <= unix_seconds(now);
                if (changed || woken || fell_due || read_failed) {
                    read_failed = true;
                    next_due = read_queue(now);
                    read_failed = false;
                }
                if (next_due) {
                    const auto until = std::chrono::seconds(*next_due - unix_seconds(now));
                    if (until < wait) wait = std::max<std::chrono::milliseconds>(until, std::chrono::milliseconds(50));
                }
            } catch (const std::exception& e) {
                spdlog::error("relay: scheduler: {}", e.what());
            }
            wake.expires_after(wait);
            boost::system::error_code ec;
            co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            woken = ec == asio::error::operation_aborted;
        }
    }

    // Claims the due rows and starts their deliveries; the queue's next due time, if any.
    std::optional<std::int64_t> read_queue(std::chrono::system_clock::time_point now) {
        if (!options.limits.enabled || guard.paused()) return std::nullopt;
        for (auto& row : db().claim_due(now, options.lease, options.max_attempts, 64, in_flight)) {
            if (row.state == "failed") {  // claimed once too often: given up, never delivered
                try {
                    report_final(row, "failed", row.attempts, row.last_result, {}, nullptr);
                } catch (const std::exception& e) {  // the rest of the batch, claimed, still starts
                    spdlog::error("relay: queue row {}: {}", row.id, e.what());
                }
                continue;
            }
            in_flight.insert(row.id);
            asio::co_spawn(io, deliver_row(std::move(row)), asio::detached);
        }
        return db().next_due_time(in_flight);
    }

    struct candidate {
        std::string host;
        asio::ip::address ip;
        std::uint16_t port;
    };

    asio::awaitable<void> deliver_row(queue_row row) {
        // Erased however the round ends (an exception of any type, or the coroutine destroyed
        // at shutdown): a row left in the set would never be claimed by this process again.
        struct in_flight_entry {
            std::set<std::int64_t>& rows;
            std::int64_t id;
            ~in_flight_entry() { rows.erase(id); }
        } entry{in_flight, row.id};
        try {
            co_await deliver_row_inner(row);
        } catch (const std::exception& e) {
            spdlog::error("relay: queue row {}: {}", row.id, e.what());
            try {
                // Only a row still ours goes back to the queue: the failure may have come after
                // its final state was written (a delivered row reported afterwards, say), and
                // deferring that one would send it again.
                const auto now_in_db = db().find_queue_row(row.id);
                // Still our claim (not one another process made after our lease ran out).
                if (now_in_db && now_in_db->state == "sending" && now_in_db->lease_until == row.lease_until &&
                    now_in_db->attempts == row.attempts)
                    finish_temporary(row, row.attempts, e.what());
            } catch (const std::exception& again) {  // the lease brings it back
                spdlog::error("relay: queue row {}: {}", row.id, again.what());
            }
        }
    }

    // One delivery round of a claimed row. row.attempts already counts this round (claim_due).
    asio::awaitable<void> deliver_row_inner(queue_row& row) {
        const unsigned attempts = row.attempts;
        // Test mode is the reservation's (relay_queue.test_mode) or this process's: either
        // one keeps the copy away from the real recipient.
        row.test_mode = row.test_mode || options.limits.test_mode;
        const bool test_mode = row.test_mode;
        // The whole round ends well before the lease does (the row is ours alone until then).
        const auto deadline = std::chrono::steady_clock::now() + options.delivery_deadline;
        const std::string deadline_passed =
            "delivery deadline (" + std::to_string(options.delivery_deadline.count()) + " s) passed";
        std::string missing;
        bool may_come_back = false;
        auto bytes = message_of(row, missing, may_come_back);
        if (!bytes) {
            if (may_come_back)
                finish_temporary(row, attempts, missing);
            else
                finish(row, "failed", attempts, missing, {}, nullptr);
            co_return;
        }
        auto message = std::make_shared<const std::string>(std::move(*bytes));
        if (message->size() > options.limits.max_size) {  // the file changed? never send more than the cap
            finish(row, "failed", attempts, "message larger than max_size", {}, nullptr);
            co_return;
        }
        const std::string domain = address_domain(row.recipient);
        const mx_result mx = co_await dns.mx(domain);
        std::string mx_summary = std::string("MX ") + domain + ": " + to_string(mx.status);
        for (const auto& h : mx.hosts) mx_summary += " " + std::to_string(h.preference) + " " + h.host + (h.implicit ? " (implicit)" : "");
        if (!mx.error.empty()) mx_summary += " (" + mx.error + ")";

        std::vector<candidate> candidates;
        std::string rcpt = row.recipient;
        if (test_mode) {
            if (options.limits.test_server.empty() || options.limits.test_recipient.empty()) {
                // A row reserved in test mode, delivered by a process without a test server:
                // failed, never sent to the real recipient (safety invariant 3).
                finish(row, "failed", attempts,
                       std::string(options.limits.test_mode ? "test mode" : "reserved in test mode, and this process has") +
                           " no test_server/test_recipient: not sent; " + mx_summary,
                       {}, nullptr);
                co_return;
            }
            rcpt = options.limits.test_recipient;
            const auto host_port = split_host_port(options.limits.test_server);
            const std::string host = host_port.first;
            const std::uint16_t port = host_port.second;
            const address_result a = co_await dns.addresses(host, true);
            for (const auto& ip : a.addresses) candidates.push_back({host, ip, port});
            if (candidates.empty()) {
                finish_temporary(row, attempts, "test server " + host + ": " + to_string(a.status) + "; " + mx_summary);
                co_return;
            }
        } else {
            if (mx.status == dns_status::no_domain || mx.status == dns_status::null_mx) {
                finish(row, "failed", attempts, mx_summary, {}, nullptr);
                co_return;
            }
            if (mx.status != dns_status::ok) {
                finish_temporary(row, attempts, mx_summary);
                co_return;
            }
            bool ipv4_only = false;
            for (const auto& d : options.force_ipv4_domains) ipv4_only = ipv4_only || ends_with_domain(domain, d);
            std::size_t hosts = 0;
            std::vector<std::string> refused;  // "host ip (why)": addresses the relay never connects to
            for (const auto& h : mx.hosts) {
                if (hosts++ >= options.max_mx_hosts || candidates.size() >= options.max_connections) break;
                const address_result a = co_await dns.addresses(h.host, !ipv4_only);
                for (const auto& ip : a.addresses) {
                    if (ipv4_only && ip.is_v6()) continue;
                    // SSRF: an MX record is the attacker's data; it must not point us at our
                    // own host, LAN or a metadata service (destination_policy.hpp).
                    if (!options.allow_private_destinations) {
                        if (const std::string why = non_public_reason(ip); !why.empty()) {
                            if (refused.size() < 8) refused.push_back(h.host + " " + ip.to_string() + " (" + why + ")");
                            continue;
                        }
                    }
                    for (auto port : options.ports) {
                        if (candidates.size() < options.max_connections) candidates.push_back({h.host, ip, port});
                    }
                }
            }
            std::string refused_list;
            for (const auto& r : refused) refused_list += (refused_list.empty() ? "" : ", ") + r;
            if (candidates.empty() && !refused.empty()) {
                finish(row, "failed", attempts,
                       "MX " + domain + " resolves only to non-public addresses: " + refused_list + "; " + mx_summary, {},
                       nullptr);
                co_return;
            }
            if (!refused.empty()) mx_summary += "; not connecting to non-public addresses: " + refused_list;
            if (candidates.empty()) {
                finish_temporary(row, attempts, mx_summary + "; no address for any MX host");
                co_return;
            }
        }

        std::optional<attempt_row> last;
        bool out_of_time = false;
        for (const auto& c : candidates) {
            if (stopping) co_return;  // the lease brings it back
            if (!options.limits.enabled || guard.paused()) {  // kill switch: stop before the next connection
                // Back to the queue; a round that made no connection yet does not count (the claim
                // counted it), one that did keeps its attempt.
                db().finish(row.id, "queued", last ? row.attempts : row.attempts - 1,
                            unix_seconds(std::chrono::system_clock::now()), "paused", "", std::chrono::system_clock::now());
                co_return;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                out_of_time = true;
                break;
            }
            // The system CA bundle is loaded at the first delivery, not at start (0.5 MB a
            // honeypot that never relays does not need to hold).
            if (!options.client.tls_context) options.client.tls_context = make_client_tls_context();
            smtp_client_options client = options.client;
            client.session_deadline = deadline;
            for (int pass = 0; pass < 2; ++pass) {
                if (pass > 0 && std::chrono::steady_clock::now() >= deadline) break;
                const auto started = events::iso8601_utc_now();
                smtp_target target{c.ip, c.port, c.port == 465, c.host};
                std::vector<std::string> one_recipient;  // (no initializer_list across co_await: GCC 12)
                one_recipient.push_back(rcpt);
                delivery_result res = co_await deliver(target, row.mail_from, std::move(one_recipient), message, client);
                store::transcript_line info;
                info.at = started;
                info.direction = 'I';
                info.text = mx_summary + (test_mode ? "; test mode: delivering to " + rcpt + " at " + options.limits.test_server : "");
                res.transcript.insert(res.transcript.begin(), std::move(info));
                const recipient_result& rr = res.recipients.front();
                attempt_row a;
                a.queue_id = row.id;
                a.message_id = row.message_id;
                a.recipient = row.recipient;
                a.delivered_to = rcpt;
                a.mx_host = c.host;
                a.ip = c.ip.to_string();
                a.port = c.port;
                a.tls_version = res.tls_version;
                a.tls_cipher = res.tls_cipher;
                a.tls_verified = res.tls_verified;
                a.tls_verify_result = res.tls_verify_result;
                a.reply_code = rr.code;
                a.reply_text = rr.reply;
                a.transcript_json = transcript_json(res.transcript);
                a.started_at = started;
                a.ended_at = events::iso8601_utc_now();
                a.outcome = res.outcome_unknown ? "unknown" : to_string(rr.outcome);
                a.test_mode = test_mode;
                a.id = db().insert_attempt(a);
                last = a;
                if (rr.outcome == delivery_outcome::delivered) {
                    finish(row, "delivered", attempts, rr.reply, last, message);
                    co_return;
                }
                if (rr.outcome == delivery_outcome::permanent) {
                    finish(row, "failed", attempts, rr.reply, last, message);
                    co_return;
                }
                // No answer to the final dot: the MX may have taken the message. A stalling MX
                // (the spammer's own, say) would otherwise get a copy per attempt of one
                // reservation: the row ends here, not retried.
                if (res.outcome_unknown) {
                    finish(row, "failed", attempts,
                           "no reply after the message was sent (" + rr.reply + "): it may have been delivered; not retried",
                           last, message);
                    co_return;
                }
                if (!res.tls_failed || !client.starttls) break;
                client.starttls = false;  // opportunistic: once more in clear text
            }
            if (std::chrono::steady_clock::now() >= deadline) out_of_time = true;
        }
        std::string why = last ? last->reply_text : std::string("no connection");
        if (out_of_time) why = deadline_passed + "; " + why;
        finish_temporary(row, attempts, why, last, message);
    }

    void finish_temporary(queue_row& row, unsigned attempts, const std::string& why, std::optional<attempt_row> last = {},
                          std::shared_ptr<const std::string> message = nullptr) {
        if (attempts >= options.max_attempts) {
            finish(row, "failed", attempts,
                   attempts_exhausted(attempts, options.max_attempts) + "): " + why,
                   last, message);
            return;
        }
        auto delay = options.retry_base * (1LL << std::min<unsigned>(attempts - 1, 20));
        if (delay > options.retry_max) delay = options.retry_max;
        const auto now = std::chrono::system_clock::now();
        db().finish(row.id, "deferred", attempts, unix_seconds(now) + delay.count(), why, "", now);
        boost::json::object f = row_fields(row, last);
        f["attempts"] = attempts;
        f["retry_in_s"] = delay.count();
        f["reason"] = why;
        emit("relay.deferred", std::move(f));
        update_daily_log(now);
    }

    boost::json::object row_fields(const queue_row& row, const std::optional<attempt_row>& last) {
        boost::json::object f;
        f["queue_id"] = row.id;
        f["message_id"] = row.message_id;
        f["mail_from"] = row.mail_from;
        f["recipient"] = row.recipient;
        f["src_ip"] = row.client_ip;
        f["manual"] = row.manual;
        f["test_mode"] = row.test_mode || options.limits.test_mode;
        if (last) {
            f["delivered_to"] = last->delivered_to;
            f["mx_host"] = last->mx_host;
            f["ip"] = last->ip;
            f["port"] = last->port;
            f["tls"] = last->tls_version;
            f["reply_code"] = last->reply_code;
            f["reply"] = last->reply_text;
        }
        return f;
    }

    // Final state: DB row, event, .Probes copy, daily log.
    void finish(queue_row& row, const std::string& state, unsigned attempts, const std::string& why,
                const std::optional<attempt_row>& last, std::shared_ptr<const std::string> message) {
        const auto now = std::chrono::system_clock::now();
        db().finish(row.id, state, attempts, unix_seconds(now), why, "", now);
        report_final(row, state, attempts, why, last, std::move(message));
    }

    // What follows a final state already in the DB: event, .Probes copy, daily log.
    void report_final(const queue_row& row, const std::string& state, unsigned attempts, const std::string& why,
                      const std::optional<attempt_row>& last, std::shared_ptr<const std::string> message) {
        const auto now = std::chrono::system_clock::now();
        boost::json::object f = row_fields(row, last);
        f["attempts"] = attempts;
        f["result"] = why;
        emit(state == "delivered" ? "relay.delivered" : "relay.failed", std::move(f));
        if (message) store_copy(row, state, attempts, why, last, std::move(message));
        update_daily_log(now);
    }

    void store_copy(const queue_row& row, const std::string& state, unsigned attempts, const std::string& why,
                    const std::optional<attempt_row>& last, std::shared_ptr<const std::string> message) {
        if (!ingest) return;
        std::string h;
        auto add = [&](const char* name, const std::string& value) { h += std::string("X-Relaybait-Relay-") + name + ": " + header_value(value) + "\r\n"; };
        add("Result", state);
        add("Reason", why);
        add("Message", row.message_id);
        add("Queue-Id", std::to_string(row.id));
        add("Recipient", row.recipient);
        add("Attempts", std::to_string(attempts));
        add("Test-Mode", row.test_mode || options.limits.test_mode ? "yes" : "no");
        if (last) {
            add("Delivered-To", last->delivered_to);
            add("MX", last->mx_host);
            add("IP", last->ip);
            add("Port", std::to_string(last->port));
            add("TLS", last->tls_version.empty() ? std::string("none")
                                                 : last->tls_version + " " + last->tls_cipher + (last->tls_verified ? " verified" : " unverified (" + last->tls_verify_result + ")"));
            add("Reply", last->reply_text);
            add("Time", last->ended_at);
        }
        auto pending = ingest->begin_message(".Probes", h);
        ingest->append(pending, *message);
        store::message_record record;
        record.listener = "relay";
        record.peer_ip = row.client_ip;
        record.mail_from = row.mail_from;
        record.recipients = {last ? last->delivered_to : row.recipient};
        record.folder = ".Probes";
        const std::int64_t queue_id = row.id;
        std::weak_ptr<impl> weak = weak_from_this();
        ingest->commit(pending, std::move(record), [weak, queue_id](store::commit_result r) {
            auto self = weak.lock();
            if (!self) return;
            asio::post(self->io, [self = self.get(), queue_id, r = std::move(r)] {
                if (!r.ok) {
                    spdlog::error("relay: storing the relayed copy of queue row {} failed: {}", queue_id, r.error);
                    return;
                }
                try {
                    if (auto row = self->db().find_queue_row(queue_id)) {
                        self->db().finish(queue_id, row->state, row->attempts, row->next_attempt_at, row->last_result,
                                          r.maildir_path, std::chrono::system_clock::now());
                    }
                } catch (const std::exception& e) {
                    spdlog::error("relay: {}", e.what());
                }
            });
        });
    }

    // ---- the daily .Logs message --------------------------------------------------------
    // One message per UTC day in maildir/.Logs, replaced as relays happen: the new version is
    // written to tmp/, fsync'd, renamed into cur/ under a NEW unique name, the directory
    // fsync'd, then the previous version unlinked (delete-then-add, never an in-place
    // rewrite: IMAP servers such as Dovecot treat a file name/UID as immutable content).
    // It goes to cur/ (flags ":2," = unread) rather than new/ because the store's start-up
    // recovery moves every new/ file without a messages row out of the Maildir, and this
    // summary deliberately has no messages row. The current file of each day is remembered
    // in relay_state ("logs_file:<day>"); Dovecot may have added flags, so it is found by
    // its base name.
    void update_daily_log(std::chrono::system_clock::time_point now) {
        try {
            const std::string day = utc_day(now);
            const fs::path root = options.data_dir / "maildir";
            store::create_maildir_folder(root, ".Logs");
            const fs::path folder = root / ".Logs";
            const auto decisions = db().decisions_of_day(day);
            const auto rows = db().queue_of_day(day);
            const std::uint64_t count = guard.daily_count(now);
            std::ostringstream body;
            body << "Relays on " << day << " (UTC): " << count << " of " << options.limits.daily << " relayed copies reserved"
                 << (options.limits.test_mode ? " (test mode)" : "") << (guard.paused() ? " (paused)" : "")
                 << (options.limits.enabled ? "" : " (disabled)") << "\r\n\r\nDecisions:\r\n";
            std::map<std::string, std::uint64_t> refused;
            for (const auto& d : decisions) {
                if (!d.allowed) {
                    ++refused[d.cap];
                    continue;
                }
                body << "  " << d.at << "  message " << header_value(d.message_id, 64) << "  from <" << header_value(d.mail_from, 200)
                     << ">  to " << header_value(d.recipients_json, 400) << "  ip " << header_value(d.client_ip, 64) << "  "
                     << "allowed" << (d.manual ? " (manual)" : "") << "\r\n";
            }
            body << "\r\nRefused:";
            for (const auto& [cap, n] : refused) body << " " << cap << "=" << n;
            body << "\r\n\r\nDeliveries:\r\n";
            for (const auto& row : rows) {
                body << "  queue " << row.id << "  message " << header_value(row.message_id, 64) << "  to <"
                     << header_value(row.recipient, 200) << ">  " << row.state << "  attempts " << row.attempts << "  "
                     << header_value(row.last_result, 300) << "\r\n";
            }
            std::string text = "From: relaybait <relaybait@" + header_value(options.hostname, 200) + ">\r\n"
                               "To: operator <postmaster@" + header_value(options.hostname, 200) + ">\r\n"
                               "Subject: relaybait relay log " + day + ": " + std::to_string(count) + "/" +
                               std::to_string(options.limits.daily) + "\r\n"
                               "Date: " + store::rfc5322_date(now) + "\r\n"
                               "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body.str();

            const auto since = now.time_since_epoch();
            const std::string name = store::maildir_unique_name(
                std::chrono::duration_cast<std::chrono::seconds>(since).count(),
                std::chrono::duration_cast<std::chrono::microseconds>(since).count() % 1'000'000, ::getpid(),
                ++log_sequence + 1'000'000, store::maildir_host(options.hostname));
            const fs::path tmp = folder / "tmp" / name;
            const fs::path final_path = folder / "cur" / (name + ":2,");
            const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
            if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + tmp.string());
            try {
                write_all(fd, text, tmp);
                if (::fsync(fd) != 0) throw std::system_error(errno, std::generic_category(), "fsync " + tmp.string());
            } catch (...) {
                ::close(fd);
                ::unlink(tmp.c_str());
                throw;
            }
            ::close(fd);
            fs::rename(tmp, final_path);
            store::fsync_directory(folder / "cur");
            const std::string key = "logs_file:" + day;
            if (auto previous = db().state(key); previous && !previous->empty()) {
                for (const char* sub : {"cur", "new"}) {
                    std::error_code ec;
                    for (const auto& entry : fs::directory_iterator(folder / sub, ec)) {
                        const std::string f = entry.path().filename().string();
                        if (f.substr(0, f.find_first_of(":,")) == *previous) fs::remove(entry.path(), ec);
                    }
                }
            }
            db().set_state(key, name);
        } catch (const std::exception& e) {
            spdlog::error("relay: daily log: {}", e.what());
        }
    }
};

relay_service::relay_service(relay_service_options options, store::ingest* ingest, events::event_log* events)
    : impl_(std::make_shared<impl>(std::move(options), ingest, events)) {}

relay_service::~relay_service() { stop(); }

void relay_service::start() {
    if (impl_->started.exchange(true)) return;
    asio::co_spawn(impl_->io, impl_->scheduler(), asio::detached);
    impl_->thread = std::thread([self = impl_.get()] {
        for (;;) {
            try {
                self->io.run();
                break;
            } catch (const std::exception& e) {
                spdlog::error("relay: {}", e.what());
            }
        }
    });
}

void relay_service::submit(relay_request request) {
    asio::post(impl_->io, [self = impl_.get(), request = std::move(request)]() mutable { self->handle_submit(std::move(request)); });
}

// Synchronous on the DB (the relay_db connection is serialised by its mutex), so the pause
// holds the moment this returns, even for rows already claimed: each delivery re-checks.
void relay_service::pause() {
    impl_->guard.set_paused(true);
    impl_->emit("relay.paused", {});
    asio::post(impl_->io, [self = impl_.get()] { self->update_daily_log(std::chrono::system_clock::now()); });
}

void relay_service::resume() {
    impl_->guard.set_paused(false);
    impl_->emit("relay.resumed", {});
    asio::post(impl_->io, [self = impl_.get()] { self->wake.cancel(); });
}

bool relay_service::paused() { return impl_->guard.paused(); }

void relay_service::stop() {
    if (!impl_ || impl_->stopping.exchange(true)) return;
    impl_->work.reset();
    impl_->io.stop();
    if (impl_->thread.joinable()) impl_->thread.join();
}

relay_db& relay_service::db() { return impl_->db(); }

}  // namespace relaybait::relay
