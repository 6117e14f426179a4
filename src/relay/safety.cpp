#include "relay/safety.hpp"

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>

#include <idn2.h>

#include <map>
#include <memory>
#include <set>

#include "common/client_network.hpp"
#include "common/text.hpp"
#include "events/event_log.hpp"
#include "events/json_safe.hpp"
#include "relay/published_limits.hpp"
#include "relay/sqlite_util.hpp"
#include "smtp/syntax.hpp"

namespace relaybait::relay {

using detail::stmt;

namespace {

constexpr std::size_t max_address_bytes = 320;  // RFC 5321: 64 local part + '@' + 255 domain

bool is_ascii(std::string_view text) {
    for (const unsigned char c : text)
        if (c >= 0x80) return false;
    return true;
}

// IDNA2008 with UTS #46 mapping (as browsers and mail providers resolve names): case folded,
// U-labels as A-labels. Empty when the name is not a valid IDN.
std::string idna_ascii(const std::string& domain) {
    char* converted = nullptr;
    const int status = idn2_to_ascii_8z(domain.c_str(), &converted, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
    const std::unique_ptr<char, decltype(&idn2_free)> owned(converted, &idn2_free);
    if (status != IDN2_OK || converted == nullptr) return "";
    return text::lowercase(converted);
}

void strip_trailing_dots(std::string& domain) {
    while (!domain.empty() && domain.back() == '.') domain.pop_back();
}

// RFC 5233 subaddress: the big providers, Sendmail and the usual Postfix set-up
// (recipient_delimiter = +) deliver "user+detail" to "user": every detail is the same mailbox.
std::string_view without_subaddress(std::string_view local) {
    const auto plus = local.find('+');
    return plus == std::string_view::npos || plus == 0 ? local : local.substr(0, plus);
}

}  // namespace

std::string address_domain(std::string_view address) {
    const auto at = address.rfind('@');
    if (at == std::string_view::npos) return "";
    std::string domain = text::lowercase(address.substr(at + 1));
    strip_trailing_dots(domain);
    if (!is_ascii(domain)) {
        // UTS #46 maps the ideographic and fullwidth full stops to '.': "gmail.com\u3002" is
        // "gmail.com." once converted, and must be the same key as gmail.com.
        domain = idna_ascii(domain);
        strip_trailing_dots(domain);
    }
    // A name DNS can look up, as the SMTP parser checks a HELO name (an address literal such
    // as [192.0.2.1] is not one: the relay only delivers through MX).
    return smtp::syntax::valid_hostname(domain, false) ? domain : std::string();
}

std::string canonical_address(std::string_view address) {
    const auto at = address.rfind('@');
    if (at == std::string_view::npos) return text::lowercase(address);
    std::string_view local = address.substr(0, at);
    std::string canonical;
    if (local.size() >= 2 && local.front() == '"' && local.back() == '"') {
        // RFC 5321 Quoted-string: "\x" is x. The quotes only spell the same mailbox.
        local = local.substr(1, local.size() - 2);
        for (std::size_t i = 0; i < local.size(); ++i) {
            if (local[i] == '\\' && i + 1 < local.size()) ++i;
            canonical += local[i];
        }
    } else {
        canonical = local;
    }
    canonical = text::lowercase(without_subaddress(canonical));
    return canonical + "@" + address_domain(address);
}

std::string client_ip_key(std::string_view client_ip) {
    if (auto network = clients::network_key(client_ip)) return std::move(*network);
    return text::lowercase(client_ip);
}

std::string json_string_array(const std::vector<std::string>& items) {
    boost::json::array array;
    for (const auto& item : items) array.emplace_back(events::to_json_safe(item));
    return boost::json::serialize(array);
}

safety::safety(const std::filesystem::path& db_file, relay_limits limits) : db_(db_file), limits_(std::move(limits)) {}

decision safety::check_and_reserve(const relay_request& request, sys_time now) {
    decision result;
    // Normalise: deduplicated by canonical form, in the order given.
    std::vector<std::string> recipients;  // as given (local parts may be case-sensitive)
    std::vector<std::string> keys;        // canonical_address: what the caps count
    std::set<std::string> seen;
    bool bad_recipient = false;
    for (const auto& rcpt : request.recipients) {
        const auto at = rcpt.rfind('@');
        if (at == std::string::npos || at == 0 || rcpt.size() > max_address_bytes ||
            rcpt.find_first_of(" \t\r\n<>") != std::string::npos || address_domain(rcpt).empty()) {
            bad_recipient = true;
            continue;
        }
        std::string key = canonical_address(rcpt);
        if (seen.insert(key).second) {
            recipients.push_back(rcpt);
            keys.push_back(std::move(key));
        }
    }
    // Bounded before it is canonicalised: two long senders alike in their first bytes share a
    // key, which only makes the per-sender cap stricter.
    const std::string sender = request.mail_from.empty()
                                   ? std::string("<>")
                                   : canonical_address(std::string_view(request.mail_from).substr(0, max_address_bytes));
    const std::string client = client_ip_key(request.client_ip);
    const std::string day = utc_day(now);
    const std::string at = events::iso8601_utc(now);
    const auto n = static_cast<std::uint64_t>(recipients.size());

    const relay_db::held_lock lock(db_.mutex());
    sqlite3* db = db_.handle();
    detail::transaction tx(db);  // BEGIN IMMEDIATE: the write lock, before anything is read
    // The running server's published caps, read under the same lock: per cap, the stricter of
    // them and this process's own (published_limits.hpp). Nothing published: our own.
    const relay_limits caps = effective_limits(limits_, read_published_limits(db_, lock));

    auto count = [&](const char* scope, const std::string& key) { return db_.counter(lock, day, scope, key); };
    auto refuse_if = [&](bool refused, const char* cap) {
        if (refused && result.cap.empty()) result.cap = cap;
        return !result.cap.empty();
    };

    refuse_if(!caps.enabled, "disabled") || refuse_if(db_.paused(lock), "paused") ||
        refuse_if(bad_recipient, "bad_recipient") || refuse_if(recipients.empty(), "no_recipients") ||
        refuse_if(request.size > caps.max_size, "size") ||
        refuse_if(recipients.size() > caps.max_recipients, "recipients");
    if (result.cap.empty()) {
        stmt s(db, "SELECT 1 FROM relay_digests WHERE sha256 = ?");
        s.bind(1, text::lowercase(request.sha256));
        refuse_if(request.sha256.empty() || s.step(), "identical");
    }
    if (result.cap.empty()) {
        refuse_if(count("daily", "") + n > caps.daily, "daily") ||
            refuse_if(count("sender", sender) + n > caps.per_sender_daily, "per_sender") ||
            refuse_if(count("client_ip", client) + n > caps.per_client_ip_daily, "per_client_ip");
    }
    std::map<std::string, std::uint64_t> per_domain;
    for (const auto& rcpt : keys) ++per_domain[address_domain(rcpt)];
    for (const auto& rcpt : keys) {
        if (result.cap.empty()) refuse_if(count("recipient", rcpt) + 1 > caps.per_recipient_daily, "per_recipient");
    }
    for (const auto& [domain, k] : per_domain) {
        if (result.cap.empty()) refuse_if(count("domain", domain) + k > caps.per_domain_daily, "per_domain");
    }
    result.allowed = result.cap.empty();

    const std::string recipients_json = json_string_array(request.recipients);
    {
        stmt s(db,
               "INSERT INTO relay_decisions(at, day, message_id, sha256, mail_from, recipients, client_ip, size, manual, "
               "allowed, cap) VALUES(?,?,?,?,?,?,?,?,?,?,?)");
        s.bind(1, at).bind(2, day).bind(3, request.message_id).bind(4, text::lowercase(request.sha256))
            .bind(5, request.mail_from).bind(6, recipients_json).bind(7, request.client_ip).bind(8, request.size)
            .bind(9, request.manual).bind(10, result.allowed).bind(11, result.cap).run();
        result.decision_id = sqlite3_last_insert_rowid(db);
    }
    if (result.allowed) {
        stmt bump(db,
                  "INSERT INTO relay_counters(day, scope, key, count) VALUES(?, ?, ?, ?) "
                  "ON CONFLICT(day, scope, key) DO UPDATE SET count = count + excluded.count");
        auto add = [&](const char* scope, const std::string& key, std::uint64_t k) {
            bump.bind(1, day).bind(2, scope).bind(3, key).bind(4, k).run();
            bump.reset();
        };
        add("daily", "", n);
        add("sender", sender, n);
        add("client_ip", client, n);
        for (const auto& rcpt : keys) add("recipient", rcpt, 1);
        for (const auto& [domain, k] : per_domain) add("domain", domain, k);
        stmt digest(db, "INSERT INTO relay_digests(sha256, message_id, reserved_at) VALUES(?, ?, ?)");
        digest.bind(1, text::lowercase(request.sha256)).bind(2, request.message_id).bind(3, at).run();
        stmt queue(db,
                   "INSERT INTO relay_queue(decision_id, message_id, file, sha256, mail_from, recipient, recipients, "
                   "client_ip, size, manual, state, attempts, next_attempt_at, created_at, updated_at, test_mode) "
                   "VALUES(?,?,?,?,?,?,?,?,?,?,'queued',0,?,?,?,?)");
        for (const auto& rcpt : recipients) {
            queue.bind(1, result.decision_id).bind(2, request.message_id).bind(3, request.file)
                .bind(4, text::lowercase(request.sha256)).bind(5, request.mail_from).bind(6, rcpt).bind(7, recipients_json)
                .bind(8, request.client_ip).bind(9, request.size).bind(10, request.manual).bind(11, unix_seconds(now))
                .bind(12, at).bind(13, at).bind(14, caps.test_mode).run();
            queue.reset();
            result.queue_ids.push_back(sqlite3_last_insert_rowid(db));
        }
        result.recipients = recipients;
    }
    tx.commit();
    return result;
}

}  // namespace relaybait::relay
