#include "net/self_identity.hpp"
#include "log_capture.hpp"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

namespace relaybait::net {
namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using asio::ip::tcp;

class temp_dir {
public:
    temp_dir() {
        std::random_device random;
        path_ = fs::temp_directory_path() / ("relaybait-identity-test-" + std::to_string(random()));
        fs::create_directories(path_);
    }
    ~temp_dir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

// Serves one connection on 127.0.0.1: reads the request head, then either answers with
// `response` or (silent) says nothing until the client hangs up.
class one_shot_http_server {
public:
    explicit one_shot_http_server(std::string response, bool silent = false)
        : response_(std::move(response)), silent_(silent), acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
        port_ = acceptor_.local_endpoint().port();
        thread_ = std::thread([this] { serve(); });
    }
    ~one_shot_http_server() {
        if (!accepted_) {  // nobody came: unblock accept() with a connection of our own
            asio::io_context io;
            tcp::socket socket(io);
            boost::system::error_code ignored;
            socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ignored);
        }
        thread_.join();
    }
    std::uint16_t port() const { return port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }

private:
    void serve() {
        boost::system::error_code error;
        tcp::socket socket(io_);
        acceptor_.accept(socket, error);
        accepted_ = true;
        if (error) return;
        std::string request;
        char buffer[1024];
        while (request.find("\r\n\r\n") == std::string::npos) {
            const std::size_t n = socket.read_some(asio::buffer(buffer), error);
            if (error) return;
            request.append(buffer, n);
        }
        if (silent_) {
            while (!error) socket.read_some(asio::buffer(buffer), error);
            return;
        }
        asio::write(socket, asio::buffer(response_), error);
        socket.shutdown(tcp::socket::shutdown_both, error);
    }

    std::string response_;
    bool silent_;
    asio::io_context io_;
    tcp::acceptor acceptor_;
    std::uint16_t port_ = 0;
    std::atomic<bool> accepted_{false};
    std::thread thread_;
};

// Serves one connection per response, in order, on 127.0.0.1, and keeps each request head.
class sequence_http_server {
public:
    explicit sequence_http_server(std::vector<std::string> responses)
        : responses_(std::move(responses)), acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
        port_ = acceptor_.local_endpoint().port();
        thread_ = std::thread([this] { serve(); });
    }
    ~sequence_http_server() {
        stopping_ = true;
        if (accepted_ < responses_.size()) {  // unblock accept() with a connection of our own
            asio::io_context io;
            tcp::socket socket(io);
            boost::system::error_code ignored;
            socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ignored);
        }
        thread_.join();
    }
    std::string url(const std::string& path = "/") const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
    std::string authority() const { return "127.0.0.1:" + std::to_string(port_); }
    std::vector<std::string> requests() const {
        const std::lock_guard lock(mutex_);
        return requests_;
    }

private:
    void serve() {
        for (const std::string& response : responses_) {
            boost::system::error_code error;
            tcp::socket socket(io_);
            acceptor_.accept(socket, error);
            ++accepted_;
            if (error || stopping_) return;
            std::string request;
            char buffer[1024];
            while (request.find("\r\n\r\n") == std::string::npos) {
                const std::size_t n = socket.read_some(asio::buffer(buffer), error);
                if (error) return;
                request.append(buffer, n);
            }
            {
                const std::lock_guard lock(mutex_);
                requests_.push_back(request);
            }
            asio::write(socket, asio::buffer(response), error);
            socket.shutdown(tcp::socket::shutdown_both, error);
        }
    }

    std::vector<std::string> responses_;
    asio::io_context io_;
    tcp::acceptor acceptor_;
    std::uint16_t port_ = 0;
    std::atomic<std::size_t> accepted_{0};
    std::atomic<bool> stopping_{false};
    mutable std::mutex mutex_;
    std::vector<std::string> requests_;
    std::thread thread_;
};

std::string http_response(const std::string& body) {
    return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + body;
}

std::string redirect_response(const std::string& location, int status = 302) {
    return "HTTP/1.1 " + std::to_string(status) + " Moved\r\nLocation: " + location +
           "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
}

using net_test::log_capture;

config::settings discovery_settings(std::vector<std::string> urls, std::uint32_t timeout_ms = 2000) {
    config::settings settings;
    settings.identity.interface_addresses = false;
    settings.identity.ipv4 = {"203.0.113.5"};
    settings.identity.discover = true;
    settings.identity.discover_urls = std::move(urls);
    settings.identity.discover_timeout_ms = timeout_ms;
    return settings;
}

class identity_discovery : public ::testing::Test {
protected:
    void SetUp() override {
        // The local test servers must be reached directly, whatever the environment says.
        for (const char* name : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
            ::unsetenv(name);
    }
};

TEST(identity_config, configured_addresses_hostname_and_effective_ports) {
    config::settings settings;
    settings.hostname = "mx.example.org";
    settings.identity.interface_addresses = false;
    settings.identity.ipv4 = {"203.0.113.5", "198.51.100.1", "203.0.113.5"};
    settings.identity.ipv6 = {"2001:DB8:0::25", "::ffff:192.0.2.9"};
    settings.port_offset = 10000;
    settings.listeners[1].enabled = false;  // smtps
    const rules::self_identity self = identity_from_config(settings);
    EXPECT_EQ(self.ipv4, (std::vector<std::string>{"203.0.113.5", "198.51.100.1", "192.0.2.9"}));
    EXPECT_EQ(self.ipv6, std::vector<std::string>{"2001:db8::25"});
    EXPECT_EQ(self.hostname, "mx.example.org");
    EXPECT_EQ(self.ports, (std::vector<std::uint16_t>{10025, 10587}));
}

TEST(identity_config, duplicate_ports_are_listed_once) {
    config::settings settings;
    settings.identity.interface_addresses = false;
    settings.listeners[2].port = 25;
    EXPECT_EQ(identity_from_config(settings).ports, (std::vector<std::uint16_t>{25, 465}));
}

TEST(identity_config, interface_addresses_exclude_loopback_and_link_local) {
    config::settings settings;
    settings.identity.ipv4 = {"203.0.113.5"};
    settings.identity.interface_addresses = true;
    const rules::self_identity self = identity_from_config(settings);
    ASSERT_FALSE(self.ipv4.empty());
    EXPECT_EQ(self.ipv4.front(), "203.0.113.5");  // configured first
    for (const auto& address : self.ipv4) {
        EXPECT_NE(address.rfind("127.", 0), 0u) << address;
        EXPECT_NE(address.rfind("169.254.", 0), 0u) << address;
        EXPECT_NE(address, "0.0.0.0");
    }
    for (const auto& address : self.ipv6) {
        EXPECT_NE(address, "::1");
        EXPECT_NE(address.rfind("fe80:", 0), 0u) << address;
    }
    settings.identity.interface_addresses = false;
    EXPECT_EQ(identity_from_config(settings).ipv4, std::vector<std::string>{"203.0.113.5"});
}

TEST(identity_config, address_candidates) {
    EXPECT_TRUE(is_self_address_candidate("203.0.113.5"));
    EXPECT_TRUE(is_self_address_candidate("10.1.2.3"));
    EXPECT_TRUE(is_self_address_candidate("2001:db8::1"));
    EXPECT_FALSE(is_self_address_candidate("127.0.0.1"));
    EXPECT_FALSE(is_self_address_candidate("127.8.9.10"));
    EXPECT_FALSE(is_self_address_candidate("::1"));
    EXPECT_FALSE(is_self_address_candidate("::ffff:127.0.0.1"));
    EXPECT_FALSE(is_self_address_candidate("169.254.10.20"));
    EXPECT_FALSE(is_self_address_candidate("fe80::1"));
    EXPECT_FALSE(is_self_address_candidate("0.0.0.0"));
    EXPECT_FALSE(is_self_address_candidate("::"));
    EXPECT_FALSE(is_self_address_candidate("mail.example.com"));
}

TEST_F(identity_discovery, off_by_default_makes_no_request) {
    one_shot_http_server server(http_response("198.51.100.7\n"));  // would be found if it were asked
    config::settings settings;
    settings.identity.interface_addresses = false;
    settings.identity.discover_urls = {server.url()};
    EXPECT_TRUE(discover_identity(settings).ipv4.empty());
}

TEST_F(identity_discovery, adds_the_address_a_server_reports) {
    one_shot_http_server server(http_response("198.51.100.7\n"));
    log_capture log;
    const rules::self_identity self = discover_identity(discovery_settings({server.url()}));
    EXPECT_EQ(self.ipv4, (std::vector<std::string>{"203.0.113.5", "198.51.100.7"}));
    EXPECT_NE(log.text().find("info identity: public address 198.51.100.7 from " + server.url()), std::string::npos)
        << log.text();
}

TEST_F(identity_discovery, ipv6_answer_goes_to_ipv6) {
    one_shot_http_server server(http_response("  2001:db8::7 \r\n"));
    const rules::self_identity self = discover_identity(discovery_settings({server.url()}));
    EXPECT_EQ(self.ipv6, std::vector<std::string>{"2001:db8::7"});
}

TEST_F(identity_discovery, garbage_is_refused) {
    one_shot_http_server server(http_response("<html>your ip: 198.51.100.7</html>"));
    log_capture log;
    const rules::self_identity self = discover_identity(discovery_settings({server.url()}));
    EXPECT_EQ(self.ipv4, std::vector<std::string>{"203.0.113.5"});
    EXPECT_TRUE(self.ipv6.empty());
    EXPECT_NE(log.text().find("warning identity: discovery from " + server.url() +
                              " failed: refused: the response is not one IP address"),
              std::string::npos)
        << log.text();
    EXPECT_NE(log.text().find("(2000 ms timeout); $self.ip is 203.0.113.5"), std::string::npos) << log.text();
}

TEST_F(identity_discovery, loopback_answer_and_error_status_and_long_body_are_refused) {
    one_shot_http_server loopback(http_response("127.0.0.1"));
    one_shot_http_server error_status("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 12\r\n"
                                      "Connection: close\r\n\r\n198.51.100.7");
    one_shot_http_server long_body(http_response(std::string(300, ' ') + "198.51.100.7"));
    const rules::self_identity self =
        discover_identity(discovery_settings({loopback.url(), error_status.url(), long_body.url()}));
    EXPECT_EQ(self.ipv4, std::vector<std::string>{"203.0.113.5"});
    EXPECT_TRUE(self.ipv6.empty());
}

TEST_F(identity_discovery, closed_port_fails_fast_without_throwing) {
    std::uint16_t port = 0;
    {
        asio::io_context io;
        tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        port = acceptor.local_endpoint().port();
    }
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
    log_capture log;
    const auto start = std::chrono::steady_clock::now();
    rules::self_identity self;
    EXPECT_NO_THROW(self = discover_identity(discovery_settings({url}, 5000)));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds{2});
    EXPECT_EQ(self.ipv4, std::vector<std::string>{"203.0.113.5"});
    EXPECT_NE(log.text().find("warning identity: discovery from " + url + " failed: "), std::string::npos) << log.text();
}

TEST_F(identity_discovery, silent_server_is_bounded_by_the_timeout) {
    one_shot_http_server server("", /*silent=*/true);
    log_capture log;
    const auto start = std::chrono::steady_clock::now();
    const rules::self_identity self = discover_identity(discovery_settings({server.url()}, 300));
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_LT(elapsed, std::chrono::seconds{2});
    EXPECT_GE(elapsed, std::chrono::milliseconds{250});
    EXPECT_EQ(self.ipv4, std::vector<std::string>{"203.0.113.5"});
    EXPECT_NE(log.text().find("(300 ms timeout)"), std::string::npos) << log.text();
}

TEST_F(identity_discovery, one_failure_does_not_stop_the_others) {
    one_shot_http_server bad(http_response("nope"));
    one_shot_http_server good(http_response("198.51.100.7"));
    log_capture log;
    const rules::self_identity self = discover_identity(discovery_settings({bad.url(), good.url()}));
    EXPECT_EQ(self.ipv4, (std::vector<std::string>{"203.0.113.5", "198.51.100.7"}));
    // The warning shows the $self.ip in use after every URL was asked.
    EXPECT_NE(log.text().find("$self.ip is 203.0.113.5, 198.51.100.7"), std::string::npos) << log.text();
}

TEST_F(identity_discovery, sends_a_plain_get_with_the_host) {
    sequence_http_server server({http_response("198.51.100.7")});
    const rules::self_identity self = discover_identity(discovery_settings({server.url("/ip?format=text")}));
    EXPECT_EQ(self.ipv4, (std::vector<std::string>{"203.0.113.5", "198.51.100.7"}));
    const auto requests = server.requests();
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0].rfind("GET /ip?format=text HTTP/1.1\r\n", 0), 0u) << requests[0];
    EXPECT_NE(requests[0].find("\r\nHost: " + server.authority() + "\r\n"), std::string::npos) << requests[0];
}

TEST_F(identity_discovery, chunked_answer_is_read) {
    one_shot_http_server server("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                "6\r\n198.51\r\n6\r\n.100.7\r\n0\r\n\r\n");
    EXPECT_EQ(discover_identity(discovery_settings({server.url()})).ipv4,
              (std::vector<std::string>{"203.0.113.5", "198.51.100.7"}));
}

TEST_F(identity_discovery, long_body_without_length_is_refused) {
    one_shot_http_server server("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + std::string(300, ' ') + "198.51.100.7");
    log_capture log;
    EXPECT_EQ(discover_identity(discovery_settings({server.url()})).ipv4, std::vector<std::string>{"203.0.113.5"});
    EXPECT_NE(log.text().find("failed: response longer than 256 bytes"), std::string::npos) << log.text();
}

TEST_F(identity_discovery, redirects_are_followed) {
    one_shot_http_server target(http_response("198.51.100.7"));
    one_shot_http_server moved(redirect_response(target.url(), 301));
    const rules::self_identity self = discover_identity(discovery_settings({moved.url()}));
    EXPECT_EQ(self.ipv4, (std::vector<std::string>{"203.0.113.5", "198.51.100.7"}));
}

TEST_F(identity_discovery, relative_redirect_stays_on_the_server) {
    sequence_http_server server({redirect_response("ip?v=4", 307), http_response("198.51.100.7")});
    const rules::self_identity self = discover_identity(discovery_settings({server.url("/a/b")}));
    EXPECT_EQ(self.ipv4, (std::vector<std::string>{"203.0.113.5", "198.51.100.7"}));
    const auto requests = server.requests();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_EQ(requests[1].rfind("GET /a/ip?v=4 HTTP/1.1\r\n", 0), 0u) << requests[1];
}

TEST_F(identity_discovery, at_most_three_redirects) {
    {  // three: followed
        one_shot_http_server target(http_response("198.51.100.7"));
        one_shot_http_server third(redirect_response(target.url()));
        one_shot_http_server second(redirect_response(third.url()));
        one_shot_http_server first(redirect_response(second.url()));
        EXPECT_EQ(discover_identity(discovery_settings({first.url()})).ipv4,
                  (std::vector<std::string>{"203.0.113.5", "198.51.100.7"}));
    }
    {  // four: refused, the target is never asked
        sequence_http_server target({http_response("198.51.100.7")});
        one_shot_http_server fourth(redirect_response(target.url()));
        one_shot_http_server third(redirect_response(fourth.url()));
        one_shot_http_server second(redirect_response(third.url()));
        one_shot_http_server first(redirect_response(second.url()));
        log_capture log;
        EXPECT_EQ(discover_identity(discovery_settings({first.url()})).ipv4, std::vector<std::string>{"203.0.113.5"});
        EXPECT_NE(log.text().find("failed: more than 3 redirects"), std::string::npos) << log.text();
        EXPECT_TRUE(target.requests().empty());
    }
}

TEST_F(identity_discovery, only_http_and_https) {
    one_shot_http_server elsewhere(redirect_response("ftp://127.0.0.1/ip"));
    log_capture log;
    const rules::self_identity self =
        discover_identity(discovery_settings({"ftp://127.0.0.1/", "file:///etc/hostname", elsewhere.url()}));
    EXPECT_EQ(self.ipv4, std::vector<std::string>{"203.0.113.5"});
    EXPECT_NE(log.text().find("discovery from ftp://127.0.0.1/ failed: unsupported scheme"), std::string::npos)
        << log.text();
    EXPECT_NE(log.text().find("discovery from file:///etc/hostname failed: unsupported scheme"), std::string::npos)
        << log.text();
    EXPECT_NE(log.text().find("failed: redirect to \"ftp://127.0.0.1/ip\" refused: unsupported scheme"),
              std::string::npos)
        << log.text();
}

TEST_F(identity_discovery, https_needs_a_tls_server) {
    one_shot_http_server plain("", /*silent=*/true);
    const std::string url = "https://127.0.0.1:" + std::to_string(plain.port()) + "/";
    log_capture log;
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(discover_identity(discovery_settings({url}, 300)).ipv4, std::vector<std::string>{"203.0.113.5"});
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds{2});
    EXPECT_NE(log.text().find("discovery from " + url + " failed: TLS handshake with 127.0.0.1: timed out"),
              std::string::npos)
        << log.text();
}

TEST(identity_file, save_and_load_round_trip) {
    temp_dir dir;
    const fs::path data = dir.path() / "data";
    EXPECT_FALSE(load_saved_identity(data).has_value());  // missing
    rules::self_identity self;
    self.ipv4 = {"203.0.113.5", "198.51.100.7"};
    self.ipv6 = {"2001:db8::25"};
    self.hostname = "mx.example.org";
    self.ports = {25, 465, 587};
    save_identity(data, self);  // creates the directory
    ASSERT_TRUE(fs::exists(data / "self-identity.json"));
    for (const auto& entry : fs::directory_iterator(data))
        EXPECT_EQ(entry.path().filename(), "self-identity.json");  // no temporary file left behind
    auto loaded = load_saved_identity(data);
    ASSERT_TRUE(loaded.has_value());
    EXPECT_EQ(loaded->ipv4, self.ipv4);
    EXPECT_EQ(loaded->ipv6, self.ipv6);
    EXPECT_EQ(loaded->hostname, self.hostname);
    EXPECT_EQ(loaded->ports, self.ports);

    // Saving again replaces the file.
    self.ipv4.clear();
    self.ports = {10025};
    save_identity(data, self);
    loaded = load_saved_identity(data);
    ASSERT_TRUE(loaded.has_value());
    EXPECT_TRUE(loaded->ipv4.empty());
    EXPECT_EQ(loaded->ports, std::vector<std::uint16_t>{10025});
}

TEST(identity_file, unreadable_or_malformed_gives_nullopt) {
    temp_dir dir;
    auto write = [&](const std::string& text) { std::ofstream(dir.path() / "self-identity.json") << text; };
    write("not json");
    EXPECT_FALSE(load_saved_identity(dir.path()).has_value());
    write("[1, 2]");
    EXPECT_FALSE(load_saved_identity(dir.path()).has_value());
    write(R"({"ipv4":["::1"],"ipv6":[],"hostname":"h","ports":[25]})");  // wrong family
    EXPECT_FALSE(load_saved_identity(dir.path()).has_value());
    write(R"({"ipv4":[],"ipv6":[],"hostname":"h","ports":[70000]})");
    EXPECT_FALSE(load_saved_identity(dir.path()).has_value());
    write(R"({"ipv4":[],"ipv6":[],"ports":[25]})");
    EXPECT_FALSE(load_saved_identity(dir.path()).has_value());
    write(R"({"ipv4":[],"ipv6":[],"hostname":"h","ports":[25]})");
    EXPECT_TRUE(load_saved_identity(dir.path()).has_value());
}

}  // namespace
}  // namespace relaybait::net
