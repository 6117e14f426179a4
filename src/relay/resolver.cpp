#include "relay/resolver.hpp"

#include <ares.h>
#include <netinet/in.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "common/text.hpp"

namespace relaybait::relay {

namespace asio = boost::asio;

const char* to_string(dns_status status) {
    switch (status) {
        case dns_status::ok: return "ok";
        case dns_status::no_domain: return "no_domain";
        case dns_status::null_mx: return "null_mx";
        case dns_status::no_data: return "no_data";
        case dns_status::temporary: return "temporary";
    }
    return "unknown";
}

namespace {

constexpr int class_in = 1;
constexpr int type_a = 1;
constexpr int type_mx = 15;
constexpr int type_aaaa = 28;

void library_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) throw std::runtime_error("ares_library_init failed");
    });
}

struct raw_answer {
    int status = ARES_ECANCELLED;
    std::vector<unsigned char> bytes;
};

// One c-ares channel for one query, its sockets watched by Asio.
struct lookup : std::enable_shared_from_this<lookup> {
    struct watcher {
        std::unique_ptr<asio::posix::stream_descriptor> descriptor;
        bool want_read = false, want_write = false, reading = false, writing = false, closed = false;
    };

    explicit lookup(asio::any_io_executor ex) : executor(ex), timer(ex), signal(ex) {}

    asio::any_io_executor executor;
    ares_channel channel = nullptr;
    asio::steady_timer timer;   // c-ares' own timeouts
    asio::steady_timer signal;  // wakes the awaiting coroutine when the answer is in
    std::map<ares_socket_t, std::shared_ptr<watcher>> sockets;
    bool finished = false;
    bool destroyed = false;
    raw_answer answer;

    static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
        auto* self = static_cast<lookup*>(data);
        if (self->destroyed && (readable || writable)) return;
        auto it = self->sockets.find(fd);
        if (!readable && !writable) {  // c-ares is about to close it
            if (it != self->sockets.end()) {
                it->second->closed = true;
                boost::system::error_code ignored;
                it->second->descriptor->cancel(ignored);
                (void)it->second->descriptor->release();
                self->sockets.erase(it);
            }
            return;
        }
        if (it == self->sockets.end()) {
            auto w = std::make_shared<watcher>();
            w->descriptor = std::make_unique<asio::posix::stream_descriptor>(self->executor, fd);
            it = self->sockets.emplace(fd, std::move(w)).first;
        }
        it->second->want_read = readable != 0;
        it->second->want_write = writable != 0;
        self->arm(fd, it->second);
    }

    static void on_answer(void* data, int status, int, unsigned char* abuf, int alen) {
        auto* self = static_cast<lookup*>(data);
        if (self->finished) return;
        self->finished = true;
        self->answer.status = status;
        if (abuf && alen > 0) self->answer.bytes.assign(abuf, abuf + alen);
    }

    void arm(ares_socket_t fd, const std::shared_ptr<watcher>& w) {
        if (w->want_read && !w->reading) {
            w->reading = true;
            w->descriptor->async_wait(asio::posix::descriptor_base::wait_read,
                                      [self = shared_from_this(), fd, w](boost::system::error_code ec) {
                                          w->reading = false;
                                          if (ec || w->closed || self->destroyed) return;
                                          ares_process_fd(self->channel, fd, ARES_SOCKET_BAD);
                                          self->progress();
                                          if (!w->closed && !self->destroyed) self->arm(fd, w);
                                      });
        }
        if (w->want_write && !w->writing) {
            w->writing = true;
            w->descriptor->async_wait(asio::posix::descriptor_base::wait_write,
                                      [self = shared_from_this(), fd, w](boost::system::error_code ec) {
                                          w->writing = false;
                                          if (ec || w->closed || self->destroyed) return;
                                          ares_process_fd(self->channel, ARES_SOCKET_BAD, fd);
                                          self->progress();
                                          if (!w->closed && !self->destroyed) self->arm(fd, w);
                                      });
        }
    }

    // After c-ares ran: wake the coroutine when done, else re-arm the timeout timer.
    void progress() {
        if (finished) {
            signal.cancel();
            return;
        }
        timeval tv{};
        timeval* next = ares_timeout(channel, nullptr, &tv);
        const auto wait = next ? std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec)
                               : std::chrono::microseconds(std::chrono::seconds(1));
        timer.expires_after(wait);
        timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
            if (ec || self->destroyed || self->finished) return;
            ares_process_fd(self->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            self->progress();
        });
    }

    void shutdown() {
        destroyed = true;
        timer.cancel();
        for (auto& [fd, w] : sockets) {
            w->closed = true;
            boost::system::error_code ignored;
            w->descriptor->cancel(ignored);
            (void)w->descriptor->release();
        }
        sockets.clear();
        if (channel) ares_destroy(channel);  // closes its sockets; on_answer ignores EDESTRUCTION
        channel = nullptr;
    }
};

asio::awaitable<raw_answer> run_query(asio::any_io_executor executor, const resolver_options& options,
                                      const std::string& name, int type) {
    library_init();
    auto q = std::make_shared<lookup>(executor);
    ares_options opts{};
    opts.sock_state_cb = &lookup::on_socket_state;
    opts.sock_state_cb_data = q.get();
    opts.timeout = static_cast<int>(options.timeout.count());
    opts.tries = options.tries;
    opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_EDNS;
    opts.ednspsz = 1232;
    const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ;
    if (ares_init_options(&q->channel, &opts, mask) != ARES_SUCCESS) {
        q->channel = nullptr;
        co_return raw_answer{ARES_ENOMEM, {}};
    }
    if (!options.servers.empty()) {
        const std::string csv = text::join(options.servers, ",");
        if (const int rc = ares_set_servers_ports_csv(q->channel, csv.c_str()); rc != ARES_SUCCESS) {
            q->shutdown();
            co_return raw_answer{rc, {}};
        }
    }
    ares_query(q->channel, name.c_str(), class_in, type, &lookup::on_answer, q.get());
    q->progress();
    while (!q->finished) {
        q->signal.expires_at(asio::steady_timer::time_point::max());
        boost::system::error_code ec;
        co_await q->signal.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (!ec && !q->finished) break;  // cannot happen (the timer never expires); defensive
    }
    raw_answer answer = std::move(q->answer);
    q->shutdown();
    co_return answer;
}

dns_status classify(int status) {
    switch (status) {
        case ARES_SUCCESS: return dns_status::ok;
        case ARES_ENOTFOUND: return dns_status::no_domain;  // NXDOMAIN
        case ARES_ENODATA: return dns_status::no_data;
        case ARES_EBADNAME: return dns_status::no_domain;
        default: return dns_status::temporary;  // SERVFAIL, REFUSED, timeout, connection refused
    }
}

const unsigned char* raw_address(const ares_addrttl& record) { return reinterpret_cast<const unsigned char*>(&record.ipaddr); }
const unsigned char* raw_address(const ares_addr6ttl& record) { return reinterpret_cast<const unsigned char*>(&record.ip6addr); }

// The addresses of an A (address_v4, ares_parse_a_reply) or AAAA (address_v6,
// ares_parse_aaaa_reply) answer, at most 32, appended to `out`; returns the parser's status.
template <typename Address, typename Record>
int append_addresses(const raw_answer& answer, int (*parse)(const unsigned char*, int, hostent**, Record*, int*),
                     std::vector<asio::ip::address>& out) {
    Record records[32];
    int count = 32;
    hostent* he = nullptr;
    const int status = parse(answer.bytes.data(), static_cast<int>(answer.bytes.size()), &he, records, &count);
    if (he) ares_free_hostent(he);
    if (status != ARES_SUCCESS) return status;
    for (int i = 0; i < count; ++i) {
        typename Address::bytes_type bytes;
        std::copy_n(raw_address(records[i]), bytes.size(), bytes.begin());
        out.emplace_back(Address(bytes));
    }
    return status;
}

int append_addresses(const raw_answer& answer, int type, std::vector<asio::ip::address>& out) {
    if (type == type_aaaa) return append_addresses<asio::ip::address_v6>(answer, &ares_parse_aaaa_reply, out);
    return append_addresses<asio::ip::address_v4>(answer, &ares_parse_a_reply, out);
}

bool valid_hostname(const std::string& name) {
    if (name.empty() || name.size() > 253) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
               c == '_';
    });
}

}  // namespace

resolver::resolver(asio::any_io_executor executor, resolver_options options)
    : executor_(std::move(executor)), options_(std::move(options)) {}

asio::awaitable<mx_result> resolver::mx(std::string domain) {
    mx_result result;
    while (!domain.empty() && domain.back() == '.') domain.pop_back();
    if (!valid_hostname(domain)) {
        result.status = dns_status::no_domain;
        result.error = "invalid domain name";
        co_return result;
    }
    const raw_answer answer = co_await run_query(executor_, options_, domain, type_mx);
    int status = answer.status;
    if (status == ARES_SUCCESS) {
        ares_mx_reply* list = nullptr;
        status = ares_parse_mx_reply(answer.bytes.data(), static_cast<int>(answer.bytes.size()), &list);
        if (status == ARES_SUCCESS) {
            for (auto* mx = list; mx; mx = mx->next) {
                std::string host = mx->host ? mx->host : "";
                while (!host.empty() && host.back() == '.') host.pop_back();
                if (host.empty()) {  // RFC 7505 null MX
                    result.status = dns_status::null_mx;
                    result.hosts.clear();
                    break;
                }
                if (result.hosts.size() < 32) result.hosts.push_back({mx->priority, host, false});
            }
            ares_free_data(list);
            if (result.status == dns_status::null_mx) co_return result;
            std::stable_sort(result.hosts.begin(), result.hosts.end(),
                             [](const mx_host& a, const mx_host& b) { return a.preference < b.preference; });
            if (!result.hosts.empty()) co_return result;
            status = ARES_ENODATA;
        }
    }
    const dns_status s = classify(status);
    if (s == dns_status::no_data) {  // no MX: the domain itself (RFC 5321 5.1)
        result.status = dns_status::ok;
        result.hosts.push_back({0, domain, true});
        co_return result;
    }
    result.status = s;
    result.error = ares_strerror(status);
    co_return result;
}

asio::awaitable<address_result> resolver::addresses(std::string host, bool want_ipv6) {
    address_result result;
    boost::system::error_code parse_error;
    std::string literal = host;
    if (literal.size() > 2 && literal.front() == '[' && literal.back() == ']') literal = literal.substr(1, literal.size() - 2);
    const auto ip = asio::ip::make_address(literal, parse_error);
    if (!parse_error) {
        result.addresses.push_back(ip);
        co_return result;
    }
    while (!host.empty() && host.back() == '.') host.pop_back();
    if (!valid_hostname(host)) {
        result.status = dns_status::no_domain;
        result.error = "invalid host name";
        co_return result;
    }
    std::vector<dns_status> failures;
    std::vector<int> types;  // AAAA first: IPv6 addresses are tried first
    if (want_ipv6) types.push_back(type_aaaa);
    types.push_back(type_a);
    for (const int type : types) {
        const raw_answer answer = co_await run_query(executor_, options_, host, type);
        int status = answer.status;
        if (status == ARES_SUCCESS) status = append_addresses(answer, type, result.addresses);
        if (status != ARES_SUCCESS) {
            failures.push_back(classify(status));
            result.error = ares_strerror(status);
        }
    }
    if (result.addresses.empty()) {
        result.status = dns_status::no_data;
        for (auto f : failures) {
            if (f == dns_status::temporary) result.status = dns_status::temporary;
        }
        if (result.status != dns_status::temporary &&
            std::find(failures.begin(), failures.end(), dns_status::no_domain) != failures.end())
            result.status = dns_status::no_domain;
    } else {
        result.error.clear();
    }
    co_return result;
}

}  // namespace relaybait::relay
