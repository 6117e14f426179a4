#include "relay/published_limits.hpp"

#include <algorithm>
#include <limits>

#include "events/event_log.hpp"
#include "relay/sqlite_util.hpp"

namespace relaybait::relay {

using detail::stmt;

namespace {

// A stored count as a cap. Fail closed: a negative (damaged) value is 0, never a huge unsigned.
template <typename T>
T cap_value(std::int64_t stored) {
    if (stored <= 0) return 0;
    const auto most = static_cast<std::uint64_t>(std::numeric_limits<T>::max());
    return static_cast<T>(std::min(static_cast<std::uint64_t>(stored), most));
}

}  // namespace

void publish_limits(relay_db& db, const relay_limits& limits, const std::string& sensor, std::int64_t pid, sys_time now) {
    if (db.read_only()) throw std::runtime_error("relay db " + db.file().string() + ": opened read-only");
    const relay_db::held_lock lock(db.mutex());
    sqlite3* handle = db.handle();
    detail::transaction tx(handle);
    stmt s(handle,
           "INSERT OR REPLACE INTO relay_published_limits(id, enabled, daily, per_recipient_daily, per_sender_daily, "
           "per_client_ip_daily, per_domain_daily, max_size, max_recipients, test_mode, test_server, test_recipient, "
           "published_at, pid, sensor) VALUES(1,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    s.bind(1, limits.enabled).bind(2, limits.daily).bind(3, limits.per_recipient_daily).bind(4, limits.per_sender_daily)
        .bind(5, limits.per_client_ip_daily).bind(6, limits.per_domain_daily).bind(7, limits.max_size)
        .bind(8, limits.max_recipients).bind(9, limits.test_mode).bind(10, limits.test_server)
        .bind(11, limits.test_recipient).bind(12, events::iso8601_utc(now)).bind(13, pid).bind(14, sensor).run();
    tx.commit();
}

std::optional<published_limits> read_published_limits(relay_db& db) {
    const relay_db::held_lock lock(db.mutex());
    return read_published_limits(db, lock);
}

std::optional<published_limits> read_published_limits(relay_db& db, const relay_db::held_lock&) {
    stmt s(db.handle(),
           "SELECT enabled, daily, per_recipient_daily, per_sender_daily, per_client_ip_daily, per_domain_daily, "
           "max_size, max_recipients, test_mode, test_server, test_recipient, published_at, pid, sensor "
           "FROM relay_published_limits WHERE id = 1");
    if (!s.step()) return std::nullopt;
    published_limits p;
    // Fail closed on a damaged row: enabled only when exactly 1, test mode unless exactly 0.
    p.limits.enabled = s.i64(0) == 1;
    p.limits.daily = cap_value<unsigned>(s.i64(1));
    p.limits.per_recipient_daily = cap_value<unsigned>(s.i64(2));
    p.limits.per_sender_daily = cap_value<unsigned>(s.i64(3));
    p.limits.per_client_ip_daily = cap_value<unsigned>(s.i64(4));
    p.limits.per_domain_daily = cap_value<unsigned>(s.i64(5));
    p.limits.max_size = cap_value<std::uint64_t>(s.i64(6));
    p.limits.max_recipients = cap_value<unsigned>(s.i64(7));
    p.limits.test_mode = s.i64(8) != 0;
    p.limits.test_server = s.text(9);
    p.limits.test_recipient = s.text(10);
    p.published_at = s.text(11);
    p.pid = s.i64(12);
    p.sensor = s.text(13);
    return p;
}

relay_limits stricter_limits(const relay_limits& own, const relay_limits& published) {
    relay_limits l;
    l.enabled = own.enabled && published.enabled;
    l.daily = std::min(own.daily, published.daily);
    l.per_recipient_daily = std::min(own.per_recipient_daily, published.per_recipient_daily);
    l.per_sender_daily = std::min(own.per_sender_daily, published.per_sender_daily);
    l.per_client_ip_daily = std::min(own.per_client_ip_daily, published.per_client_ip_daily);
    l.per_domain_daily = std::min(own.per_domain_daily, published.per_domain_daily);
    l.max_size = std::min(own.max_size, published.max_size);
    l.max_recipients = std::min(own.max_recipients, published.max_recipients);
    l.test_mode = own.test_mode || published.test_mode;
    const bool server_has_test_target = !published.test_server.empty() || !published.test_recipient.empty();
    l.test_server = server_has_test_target ? published.test_server : own.test_server;
    l.test_recipient = server_has_test_target ? published.test_recipient : own.test_recipient;
    return l;
}

relay_limits effective_limits(const relay_limits& own, const std::optional<published_limits>& published) {
    return published ? stricter_limits(own, published->limits) : own;
}

}  // namespace relaybait::relay
