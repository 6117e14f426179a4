#include "net/self_identity.hpp"

#include "common/text.hpp"

#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <system_error>
#include <thread>

namespace relaybait::net {
namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ip = boost::asio::ip;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
namespace json = boost::json;

constexpr std::size_t max_response_bytes = 256;
constexpr std::string_view identity_file_name = "self-identity.json";

std::optional<ip::address> parse_address(std::string_view text) {
    boost::system::error_code error;
    ip::address address = ip::make_address(std::string(text), error);
    if (error) return std::nullopt;
    if (address.is_v6() && address.to_v6().is_v4_mapped())
        address = ip::make_address_v4(ip::v4_mapped, address.to_v6());
    return address;
}

bool is_link_local_v4(const ip::address_v4& address) {
    return (address.to_uint() & 0xffff0000u) == 0xa9fe0000u;  // 169.254.0.0/16
}

bool is_candidate(const ip::address& address) {
    if (address.is_unspecified() || address.is_loopback()) return false;
    if (address.is_v4()) return !is_link_local_v4(address.to_v4());
    return !address.to_v6().is_link_local();
}

void add_address(rules::self_identity& identity, const ip::address& address) {
    auto& family = address.is_v4() ? identity.ipv4 : identity.ipv6;
    std::string text = address.to_string();
    if (std::find(family.begin(), family.end(), text) == family.end()) family.push_back(std::move(text));
}

std::vector<ip::address> interface_addresses() {
    std::vector<ip::address> found;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) {
        spdlog::warn("identity: cannot list the network interfaces: {}", std::strerror(errno));
        return found;
    }
    for (const ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
        if (entry->ifa_addr == nullptr || (entry->ifa_flags & IFF_UP) == 0 || (entry->ifa_flags & IFF_LOOPBACK) != 0)
            continue;
        if (entry->ifa_addr->sa_family == AF_INET) {
            const auto* in = reinterpret_cast<const sockaddr_in*>(entry->ifa_addr);
            found.emplace_back(ip::address_v4(ntohl(in->sin_addr.s_addr)));
        } else if (entry->ifa_addr->sa_family == AF_INET6) {
            const auto* in6 = reinterpret_cast<const sockaddr_in6*>(entry->ifa_addr);
            ip::address_v6::bytes_type bytes;
            std::copy(std::begin(in6->sin6_addr.s6_addr), std::end(in6->sin6_addr.s6_addr), bytes.begin());
            found.emplace_back(ip::address_v6(bytes));
        }
    }
    ::freeifaddrs(list);
    return found;
}

std::string self_ip_text(const rules::self_identity& identity) {
    std::string text;
    for (const auto* family : {&identity.ipv4, &identity.ipv6})
        for (const auto& address : *family) text += (text.empty() ? "" : ", ") + address;
    return text.empty() ? "empty" : text;
}

// At most 64 characters of untrusted text, non-printable bytes as '?', quoted.
std::string printable(std::string_view text) {
    std::string shown = "\"";
    for (std::size_t i = 0; i < text.size() && i < 64; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        shown += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
    }
    if (text.size() > 64) shown += "...";
    return shown + '"';
}

std::string_view trim(std::string_view text) {
    constexpr std::string_view space = " \t\r\n\f\v";
    const std::size_t first = text.find_first_not_of(space);
    if (first == std::string_view::npos) return {};
    return text.substr(first, text.find_last_not_of(space) - first + 1);
}

using steady = std::chrono::steady_clock;

constexpr int max_redirects = 3;

using text::lowercase;

// scheme://host[:port][/path][?query][#fragment] for http and https, nothing more.
struct url_parts {
    bool https = false;
    std::string host;  // lower case; an IPv6 literal without its brackets
    std::uint16_t port = 0;
    std::string target = "/";  // path and query
    bool ipv6_literal = false;

    std::string authority() const {
        std::string text = ipv6_literal ? "[" + host + "]" : host;
        if (port != (https ? 443 : 80)) text += ":" + std::to_string(port);
        return text;
    }
};

bool is_scheme_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '-' || c == '.';
}

// The path and query of a URL, without its fragment; nullopt when it holds bytes that
// cannot go on the request line (space, controls, non-ASCII).
std::optional<std::string> request_target(std::string_view rest) {
    rest = rest.substr(0, rest.find('#'));
    for (const char c : rest) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte <= 0x20 || byte >= 0x7f) return std::nullopt;
    }
    std::string target(rest);
    if (target.empty() || target.front() != '/') target.insert(0, "/");
    return target;
}

std::optional<url_parts> parse_url(std::string_view url, std::string& error) {
    const std::size_t separator = url.find("://");
    if (separator == std::string_view::npos || separator == 0 ||
        !std::all_of(url.begin(), url.begin() + static_cast<std::ptrdiff_t>(separator), is_scheme_char)) {
        error = "not an http or https URL";
        return std::nullopt;
    }
    url_parts parts;
    const std::string scheme = lowercase(url.substr(0, separator));
    if (scheme != "http" && scheme != "https") {
        error = "unsupported scheme " + printable(scheme) + " (only http and https)";
        return std::nullopt;
    }
    parts.https = scheme == "https";
    parts.port = parts.https ? 443 : 80;
    std::string_view rest = url.substr(separator + 3);
    const std::size_t authority_end = rest.find_first_of("/?#");
    std::string_view authority = rest.substr(0, authority_end);
    rest = authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
    if (authority.find('@') != std::string_view::npos) {
        error = "credentials in the URL are not supported";
        return std::nullopt;
    }
    std::string_view port_text;
    bool has_port = false;
    if (!authority.empty() && authority.front() == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) {
            error = "bad IPv6 literal in the URL";
            return std::nullopt;
        }
        parts.host = lowercase(authority.substr(1, close - 1));
        parts.ipv6_literal = true;
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                error = "bad host in the URL";
                return std::nullopt;
            }
            has_port = true;
            port_text = after.substr(1);
        }
        boost::system::error_code parse_error;
        ip::make_address_v6(parts.host, parse_error);
        if (parse_error) {
            error = "bad IPv6 literal in the URL";
            return std::nullopt;
        }
    } else {
        const std::size_t colon = authority.rfind(':');
        if (colon != std::string_view::npos) {
            has_port = true;
            port_text = authority.substr(colon + 1);
            authority = authority.substr(0, colon);
        }
        parts.host = lowercase(authority);
        const bool host_ok = !parts.host.empty() && std::all_of(parts.host.begin(), parts.host.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
        });
        if (!host_ok) {
            error = "bad host in the URL";
            return std::nullopt;
        }
    }
    if (has_port && !port_text.empty()) {
        unsigned long port = 0;
        const bool digits = port_text.size() <= 5 && std::all_of(port_text.begin(), port_text.end(), [](char c) {
            return std::isdigit(static_cast<unsigned char>(c)) != 0;
        });
        if (digits) port = std::stoul(std::string(port_text));
        if (!digits || port == 0 || port > 65535) {
            error = "bad port in the URL";
            return std::nullopt;
        }
        parts.port = static_cast<std::uint16_t>(port);
    }
    auto target = request_target(rest);
    if (!target) {
        error = "bad path in the URL";
        return std::nullopt;
    }
    parts.target = std::move(*target);
    return parts;
}

// The URL a Location header points to, relative to `base`.
std::optional<url_parts> resolve_location(const url_parts& base, std::string_view location, std::string& error) {
    location = trim(location);
    const std::size_t scheme_end = location.find(':');
    if (scheme_end != std::string_view::npos && scheme_end > 0 &&
        std::all_of(location.begin(), location.begin() + static_cast<std::ptrdiff_t>(scheme_end), is_scheme_char))
        return parse_url(location, error);  // absolute, or another scheme (refused there)
    if (location.substr(0, 2) == "//") return parse_url((base.https ? "https:" : "http:") + std::string(location), error);
    std::string relative;
    if (location.empty() || location.front() == '/') {
        relative = std::string(location);
    } else {
        std::string_view path = base.target;
        path = path.substr(0, path.find('?'));
        if (location.front() == '?')
            relative = std::string(path) + std::string(location);
        else
            relative = std::string(path.substr(0, path.rfind('/') + 1)) + std::string(location);
    }
    auto target = request_target(relative);
    if (!target) {
        error = "bad path in the redirect";
        return std::nullopt;
    }
    url_parts next = base;
    next.target = std::move(*target);
    return next;
}

struct exchange_result {
    std::string error;  // the request failed; nothing else is meaningful
    unsigned status = 0;
    std::string location;  // of a redirect
    std::string body;      // of a 2xx answer
};

std::string failure(const std::string& what, const boost::system::error_code& error) {
    if (error == beast::error::timeout || error == asio::error::operation_aborted) return what + ": timed out";
    return what + ": " + error.message();
}

// One GET over a connected stream (plain or TLS); reads the body of a 2xx answer only.
template <class Stream>
asio::awaitable<void> exchange(Stream& stream, const url_parts& url, steady::time_point deadline,
                               exchange_result& out) {
    auto& lowest = beast::get_lowest_layer(stream);
    boost::system::error_code error;
    http::request<http::empty_body> request{http::verb::get, url.target, 11};
    request.set(http::field::host, url.authority());
    request.set(http::field::user_agent, "relaybait");
    request.set(http::field::accept, "*/*");
    request.set(http::field::connection, "close");
    lowest.expires_at(deadline);
    co_await http::async_write(stream, request, asio::redirect_error(asio::use_awaitable, error));
    if (error) {
        out.error = failure("send the request", error);
        co_return;
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);  // checked below, only for the body that is kept
    lowest.expires_at(deadline);
    co_await http::async_read_header(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, error));
    if (error) {
        out.error = failure("read the response", error);
        co_return;
    }
    out.status = parser.get().result_int();
    if (out.status >= 300 && out.status <= 399 && out.status != 304) {
        const auto location = parser.get().find(http::field::location);
        if (location != parser.get().end()) out.location = std::string(location->value());
        co_return;
    }
    if (out.status < 200 || out.status > 299) co_return;
    const std::string too_long = "response longer than " + std::to_string(max_response_bytes) + " bytes";
    if (const auto length = parser.content_length(); length && *length > max_response_bytes) {
        out.error = too_long;
        co_return;
    }
    parser.body_limit(max_response_bytes);
    lowest.expires_at(deadline);
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, error));
    if (error == http::error::body_limit) {
        out.error = too_long;
        co_return;
    }
    if (error) {
        out.error = failure("read the response", error);
        co_return;
    }
    out.body = std::move(parser.get().body());
}

// The addresses of `host`. getaddrinfo cannot be cancelled: it runs on a thread of its own
// that is left behind, still holding its state, when the deadline passes first.
std::optional<std::vector<tcp::endpoint>> resolve(const url_parts& url, steady::time_point deadline,
                                                   std::string& error_text) {
    const std::string port = std::to_string(url.port);
    boost::system::error_code parse_error;
    const ip::address literal = ip::make_address(url.host, parse_error);
    if (!parse_error) return std::vector<tcp::endpoint>{tcp::endpoint(literal, url.port)};
    struct shared_state {
        std::mutex mutex;
        std::condition_variable done_signal;
        bool done = false;
        tcp::resolver::results_type results;
        boost::system::error_code error;
    };
    auto state = std::make_shared<shared_state>();
    std::thread([state, host = url.host, port] {
        asio::io_context io;
        tcp::resolver resolver(io);
        boost::system::error_code error;
        auto results = resolver.resolve(host, port, error);
        const std::lock_guard lock(state->mutex);
        state->results = std::move(results);
        state->error = error;
        state->done = true;
        state->done_signal.notify_one();
    }).detach();
    std::unique_lock lock(state->mutex);
    if (!state->done_signal.wait_until(lock, deadline, [&] { return state->done; })) {
        error_text = "resolve " + url.host + ": timed out";
        return std::nullopt;
    }
    if (state->error || state->results.empty()) {
        error_text = "resolve " + url.host + ": " + (state->error ? state->error.message() : "no address");
        return std::nullopt;
    }
    std::vector<tcp::endpoint> endpoints;
    for (const auto& entry : state->results) endpoints.push_back(entry.endpoint());
    return endpoints;
}

asio::awaitable<void> exchange_plain(asio::io_context& io, std::vector<tcp::endpoint> endpoints, const url_parts& url,
                                     steady::time_point deadline, exchange_result& out) {
    beast::tcp_stream stream(io);
    boost::system::error_code error;
    stream.expires_at(deadline);
    co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, error));
    if (error) {
        out.error = failure("connect to " + url.host + " port " + std::to_string(url.port), error);
        co_return;
    }
    co_await exchange(stream, url, deadline, out);
    stream.socket().shutdown(tcp::socket::shutdown_both, error);
}

asio::awaitable<void> exchange_tls(asio::io_context& io, std::vector<tcp::endpoint> endpoints, const url_parts& url,
                                   steady::time_point deadline, exchange_result& out) {
    boost::system::error_code error;
    ssl::context context(ssl::context::tls_client);
    context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    context.set_default_verify_paths(error);
    if (error) {
        out.error = failure("load the system CA certificates", error);
        co_return;
    }
    context.set_verify_mode(ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(io, context);
    stream.set_verify_callback(ssl::host_name_verification(url.host));
    boost::system::error_code not_an_address;
    ip::make_address(url.host, not_an_address);
    if (not_an_address && SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str()) != 1) {  // SNI
        out.error = "cannot set the TLS server name";
        co_return;
    }
    auto& lowest = beast::get_lowest_layer(stream);
    lowest.expires_at(deadline);
    co_await lowest.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, error));
    if (error) {
        out.error = failure("connect to " + url.host + " port " + std::to_string(url.port), error);
        co_return;
    }
    lowest.expires_at(deadline);
    co_await stream.async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, error));
    if (error) {
        out.error = failure("TLS handshake with " + url.host, error);
        co_return;
    }
    co_await exchange(stream, url, deadline, out);
    lowest.socket().shutdown(tcp::socket::shutdown_both, error);  // no close_notify: the answer is in
}

exchange_result get_once(const url_parts& url, steady::time_point deadline) {
    exchange_result out;
    auto endpoints = resolve(url, deadline, out.error);
    if (!endpoints) return out;
    asio::io_context io(1);
    std::exception_ptr thrown;
    auto done = [&thrown](std::exception_ptr error) { thrown = error; };
    if (url.https)
        asio::co_spawn(io, exchange_tls(io, std::move(*endpoints), url, deadline, out), done);
    else
        asio::co_spawn(io, exchange_plain(io, std::move(*endpoints), url, deadline, out), done);
    io.run();
    if (thrown) std::rethrow_exception(thrown);
    return out;
}

struct discovery {
    std::optional<ip::address> address;
    std::string error;  // when no address
};

discovery fetch_public_address(const std::string& url, std::uint32_t timeout_ms) {
    const steady::time_point deadline = steady::now() + std::chrono::milliseconds(timeout_ms);
    std::string error;
    std::optional<url_parts> current = parse_url(url, error);
    if (!current) return {std::nullopt, error};
    bool was_https = current->https;
    exchange_result answer;
    for (int redirects = 0;; ++redirects) {
        answer = get_once(*current, deadline);
        if (!answer.error.empty()) return {std::nullopt, std::move(answer.error)};
        if (answer.location.empty()) break;
        if (redirects == max_redirects)
            return {std::nullopt, "more than " + std::to_string(max_redirects) + " redirects"};
        std::optional<url_parts> next = resolve_location(*current, answer.location, error);
        if (!next) return {std::nullopt, "redirect to " + printable(answer.location) + " refused: " + error};
        if (was_https && !next->https)
            return {std::nullopt, "redirect to " + printable(answer.location) + " refused: from https down to http"};
        if (steady::now() >= deadline) return {std::nullopt, "timed out"};
        current = std::move(next);
        was_https = was_https || current->https;
    }
    if (answer.status < 200 || answer.status > 299) return {std::nullopt, "HTTP status " + std::to_string(answer.status)};
    const std::string_view text = trim(answer.body);
    const auto address = parse_address(text);
    if (!address) return {std::nullopt, "refused: the response is not one IP address: " + printable(answer.body)};
    if (!is_candidate(*address) || address->is_multicast())
        return {std::nullopt, "refused: " + address->to_string() + " is not a public address"};
    return {address, {}};
}

// Writes `bytes` to `path` and fsyncs it; throws std::system_error.
void write_synced(const fs::path& path, std::string_view bytes) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "create " + path.string());
    auto fail = [&](const char* what) {
        const int error = errno;
        ::close(fd);
        throw std::system_error(error, std::generic_category(), std::string(what) + " " + path.string());
    };
    while (!bytes.empty()) {
        const ssize_t written = ::write(fd, bytes.data(), bytes.size());
        if (written < 0) {
            if (errno == EINTR) continue;
            fail("write");
        }
        bytes.remove_prefix(static_cast<std::size_t>(written));
    }
    if (::fsync(fd) != 0) fail("fsync");
    if (::close(fd) != 0) throw std::system_error(errno, std::generic_category(), "close " + path.string());
}

void sync_directory(const fs::path& directory) {
    const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;  // best effort: the rename itself is what makes the file whole
    ::fsync(fd);
    ::close(fd);
}

std::optional<std::vector<std::string>> address_list(const json::object& object, std::string_view key, bool v4) {
    const json::value* value = object.if_contains(key);
    if (value == nullptr || !value->is_array()) return std::nullopt;
    std::vector<std::string> addresses;
    for (const json::value& element : value->get_array()) {
        if (!element.is_string()) return std::nullopt;
        const std::string text(element.get_string());
        const auto address = parse_address(text);
        if (!address || address->is_v4() != v4) return std::nullopt;
        addresses.push_back(text);
    }
    return addresses;
}

}  // namespace

bool is_self_address_candidate(std::string_view address) {
    const auto parsed = parse_address(address);
    return parsed && is_candidate(*parsed);
}

rules::self_identity identity_from_config(const config::settings& settings) {
    rules::self_identity identity;
    for (const auto* configured : {&settings.identity.ipv4, &settings.identity.ipv6})
        for (const std::string& text : *configured)
            if (const auto address = parse_address(text)) add_address(identity, *address);
    if (settings.identity.interface_addresses)
        for (const ip::address& address : interface_addresses())
            if (is_candidate(address)) add_address(identity, address);
    identity.hostname = settings.hostname;
    for (const config::listener_config& listener : settings.listeners) {
        if (!listener.enabled) continue;
        const std::uint16_t port = settings.effective_port(listener);
        if (std::find(identity.ports.begin(), identity.ports.end(), port) == identity.ports.end())
            identity.ports.push_back(port);
    }
    return identity;
}

rules::self_identity discover_identity(const config::settings& settings) {
    rules::self_identity identity = identity_from_config(settings);
    if (!settings.identity.discover) return identity;
    const std::uint32_t timeout_ms = settings.identity.discover_timeout_ms;
    std::vector<std::pair<std::string, std::string>> failures;  // url, reason
    for (const std::string& url : settings.identity.discover_urls) {
        discovery found;
        try {
            found = fetch_public_address(url, timeout_ms);
        } catch (const std::exception& error) {  // allocation and the like: never stop the start for this
            found = {std::nullopt, error.what()};
        }
        if (found.address) {
            spdlog::info("identity: public address {} from {}", found.address->to_string(), url);
            add_address(identity, *found.address);
        } else {
            failures.emplace_back(url, std::move(found.error));
        }
    }
    // Logged once every URL was asked, so that each warning shows the $self.ip actually in use.
    const std::string self_ip = self_ip_text(identity);
    for (const auto& [url, reason] : failures)
        spdlog::warn("identity: discovery from {} failed: {} ({} ms timeout); $self.ip is {}", url, reason, timeout_ms,
                     self_ip);
    return identity;
}

void save_identity(const std::filesystem::path& data_dir, const rules::self_identity& identity) {
    json::object object;
    json::array ipv4, ipv6, ports;
    for (const auto& address : identity.ipv4) ipv4.emplace_back(address);
    for (const auto& address : identity.ipv6) ipv6.emplace_back(address);
    for (std::uint16_t port : identity.ports) ports.emplace_back(port);
    object["ipv4"] = std::move(ipv4);
    object["ipv6"] = std::move(ipv6);
    object["hostname"] = identity.hostname;
    object["ports"] = std::move(ports);
    const std::string text = json::serialize(object) + "\n";

    fs::create_directories(data_dir);
    const fs::path target = data_dir / identity_file_name;
    const fs::path temporary = data_dir / (std::string(identity_file_name) + ".tmp." + std::to_string(::getpid()));
    try {
        write_synced(temporary, text);
        fs::rename(temporary, target);
    } catch (...) {
        std::error_code ignored;
        fs::remove(temporary, ignored);
        throw;
    }
    sync_directory(data_dir);
}

std::optional<rules::self_identity> load_saved_identity(const std::filesystem::path& data_dir) {
    std::ifstream in(data_dir / identity_file_name, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return std::nullopt;
    boost::system::error_code error;
    const json::value value = json::parse(text.str(), error);
    if (error || !value.is_object()) return std::nullopt;
    const json::object& object = value.get_object();
    rules::self_identity identity;
    auto ipv4 = address_list(object, "ipv4", true);
    auto ipv6 = address_list(object, "ipv6", false);
    if (!ipv4 || !ipv6) return std::nullopt;
    identity.ipv4 = std::move(*ipv4);
    identity.ipv6 = std::move(*ipv6);
    const json::value* hostname = object.if_contains("hostname");
    if (hostname == nullptr || !hostname->is_string()) return std::nullopt;
    identity.hostname = std::string(hostname->get_string());
    const json::value* ports = object.if_contains("ports");
    if (ports == nullptr || !ports->is_array()) return std::nullopt;
    for (const json::value& port : ports->get_array()) {
        std::int64_t number = 0;
        if (port.is_int64())
            number = port.get_int64();
        else if (port.is_uint64() && port.get_uint64() <= 65535)
            number = static_cast<std::int64_t>(port.get_uint64());
        else
            return std::nullopt;
        if (number < 1 || number > 65535) return std::nullopt;
        identity.ports.push_back(static_cast<std::uint16_t>(number));
    }
    return identity;
}

}  // namespace relaybait::net
