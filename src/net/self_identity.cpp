#include "net/self_identity.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <system_error>

namespace relaybait::net {
namespace {

namespace fs = std::filesystem;
namespace ip = boost::asio::ip;
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

void init_curl_once() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct capped_body {
    std::string text;
    bool overflow = false;
};

std::size_t collect(char* data, std::size_t size, std::size_t count, void* user) {
    auto* body = static_cast<capped_body*>(user);
    const std::size_t bytes = size * count;
    if (body->text.size() + bytes > max_response_bytes) {
        body->overflow = true;
        return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
    }
    body->text.append(data, bytes);
    return bytes;
}

struct discovery {
    std::optional<ip::address> address;
    std::string error;  // when no address
};

class curl_handle {
public:
    curl_handle() : handle_(curl_easy_init()) {}
    ~curl_handle() {
        if (handle_ != nullptr) curl_easy_cleanup(handle_);
    }
    curl_handle(const curl_handle&) = delete;
    curl_handle& operator=(const curl_handle&) = delete;
    CURL* get() const { return handle_; }

private:
    CURL* handle_;
};

bool starts_with_https(std::string_view url) {
    if (url.size() < 8) return false;
    std::string scheme(url.substr(0, 8));
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
    return scheme == "https://";
}

discovery fetch_public_address(const std::string& url, std::uint32_t timeout_ms) {
    init_curl_once();
    curl_handle curl;
    if (curl.get() == nullptr) return {std::nullopt, "cannot create a libcurl handle"};
    CURL* handle = curl.get();
    capped_body body;
    char error_buffer[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
    curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(handle, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, starts_with_https(url) ? "https" : "http,https");
    curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
    curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_ms));
    curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(handle, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error_buffer);
    const CURLcode code = curl_easy_perform(handle);
    if (body.overflow) return {std::nullopt, "response longer than " + std::to_string(max_response_bytes) + " bytes"};
    if (code != CURLE_OK)
        return {std::nullopt, error_buffer[0] != '\0' ? std::string(error_buffer) : std::string(curl_easy_strerror(code))};
    long status = 0;
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) return {std::nullopt, "HTTP status " + std::to_string(status)};
    const std::string_view text = trim(body.text);
    const auto address = parse_address(text);
    if (!address) return {std::nullopt, "refused: the response is not one IP address: " + printable(body.text)};
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
