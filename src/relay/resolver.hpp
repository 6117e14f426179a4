#pragma once
// Asynchronous DNS for the relay: c-ares driven by Asio (the c-ares sockets are watched with
// posix::stream_descriptor waits, its timeouts with a steady_timer; nothing blocks the
// io_context). Each lookup uses its own short-lived c-ares channel configured with the
// resolver's servers, so concurrent lookups share no state.
//
//   co_await r.mx("example.org")   MX hosts sorted by preference (stable for equal ones).
//     No MX records (NODATA)        -> the domain itself as an implicit MX (RFC 5321 5.1).
//     Null MX "." (RFC 7505)        -> status null_mx: the domain accepts no mail.
//     NXDOMAIN                      -> status no_domain.      (both permanent)
//     SERVFAIL, timeout, refused    -> status temporary.
//   co_await r.addresses("mx.example.org")  AAAA then A (IP literals returned as is).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace relaybait::relay {

enum class dns_status { ok, no_domain, null_mx, no_data, temporary };
const char* to_string(dns_status status);

struct mx_host {
    unsigned preference = 0;
    std::string host;
    bool implicit = false;  // the domain itself: it has no MX records
};

struct mx_result {
    dns_status status = dns_status::ok;
    std::vector<mx_host> hosts;
    std::string error;  // c-ares' message when not ok
};

struct address_result {
    dns_status status = dns_status::ok;  // ok when at least one address was found
    std::vector<boost::asio::ip::address> addresses;  // IPv6 first, then IPv4
    std::string error;
};

struct resolver_options {
    // "ip[:port]" entries, c-ares' ares_set_servers_ports_csv syntax ("127.0.0.1:5353",
    // "[::1]:53"). Empty: the system's /etc/resolv.conf.
    std::vector<std::string> servers;
    std::chrono::milliseconds timeout{3000};  // per try
    int tries = 2;
};

class resolver {
public:
    resolver(boost::asio::any_io_executor executor, resolver_options options);

    boost::asio::awaitable<mx_result> mx(std::string domain);
    boost::asio::awaitable<address_result> addresses(std::string host, bool want_ipv6 = true);

private:
    boost::asio::any_io_executor executor_;
    resolver_options options_;
};

}  // namespace relaybait::relay
