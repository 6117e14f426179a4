#pragma once
// Helpers for the relay tests: temp dirs, free ports, child processes (dnsmasq, aiosmtpd).
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "relay/resolver.hpp"

extern char** environ;

namespace relay_test {

namespace fs = std::filesystem;

struct temp_dir {
    fs::path path;
    temp_dir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("relaybait-relay-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// A port free on 127.0.0.1 for both TCP and UDP (good enough for tests).
inline unsigned short free_port() {
    for (int tries = 0; tries < 50; ++tries) {
        int t = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(t, reinterpret_cast<sockaddr*>(&a), sizeof a);
        socklen_t len = sizeof a;
        ::getsockname(t, reinterpret_cast<sockaddr*>(&a), &len);
        const unsigned short port = ntohs(a.sin_port);
        int u = ::socket(AF_INET, SOCK_DGRAM, 0);
        const bool udp_ok = ::bind(u, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(u);
        ::close(t);
        if (udp_ok) return port;
    }
    throw std::runtime_error("no free port");
}

// A child process with a pipe on stdin (closed = "stop") and stdout (read for READY).
class child {
public:
    explicit child(std::vector<std::string> argv, bool wait_ready_line) {
        int in[2], out[2];
        if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, in[0], 0);
        posix_spawn_file_actions_adddup2(&actions, out[1], 1);
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(a.data());
        args.push_back(nullptr);
        if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ) != 0) {
            throw std::runtime_error("cannot start " + argv[0]);
        }
        posix_spawn_file_actions_destroy(&actions);
        ::close(in[0]);
        ::close(out[1]);
        stdin_ = in[1];
        stdout_ = out[0];
        if (wait_ready_line) {
            std::string line;
            char c;
            while (::read(stdout_, &c, 1) == 1) {
                if (c == '\n') {
                    if (line == "READY") return;
                    line.clear();
                } else {
                    line += c;
                }
            }
            throw std::runtime_error("child did not become ready: " + argv[0]);
        }
    }
    ~child() {
        ::close(stdin_);
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        ::close(stdout_);
    }
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
    int stdin_ = -1, stdout_ = -1;
};

inline std::string read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void write_all(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary);
    out << bytes;
}

// Runs one coroutine to completion on a fresh io_context.
template <typename T>
T run(std::function<boost::asio::awaitable<T>(boost::asio::any_io_executor)> make) {
    boost::asio::io_context io;
    auto future = boost::asio::co_spawn(io, make(io.get_executor()), boost::asio::use_future);
    io.run();
    return future.get();
}

template <typename Pred>
bool wait_for(Pred pred, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return pred();
}

// Self-signed certificate for the fake MTA's STARTTLS.
inline void make_cert(const fs::path& dir) {
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=fake.test -keyout " +
                            (dir / "key.pem").string() + " -out " + (dir / "cert.pem").string() + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl req failed");
}

struct fake_mta {
    temp_dir dir;
    unsigned short port = free_port();
    std::unique_ptr<child> process;
    explicit fake_mta(bool tls) {
        fs::create_directories(dir.path / "out");
        std::vector<std::string> argv = {"/usr/bin/python3", std::string(RELAYBAIT_SOURCE_DIR) + "/tests/unit/relay/fake_smtp.py",
                                         "--port", std::to_string(port), "--outdir", (dir.path / "out").string()};
        if (tls) {
            make_cert(dir.path);
            argv.insert(argv.end(), {"--cert", (dir.path / "cert.pem").string(), "--key", (dir.path / "key.pem").string()});
        }
        process = std::make_unique<child>(argv, true);
    }
    fs::path out() const { return dir.path / "out"; }
    std::size_t received() const {
        std::size_t n = 0;
        for (const auto& e : fs::directory_iterator(out())) n += e.path().extension() == ".eml";
        return n;
    }
};

// dnsmasq on 127.0.0.1 answering for *.test from `records` (--mx-host=..., --host-record=...,
// which must give mx.example.test an address): ready once that name resolves.
struct loopback_dns {
    unsigned short port = free_port();
    std::unique_ptr<child> process;
    explicit loopback_dns(const std::vector<std::string>& records) {
        std::vector<std::string> argv{"/usr/sbin/dnsmasq", "--port=" + std::to_string(port), "--listen-address=127.0.0.1",
                                      "--bind-interfaces", "--no-daemon", "--no-resolv", "--no-hosts", "--local=/test/"};
        argv.insert(argv.end(), records.begin(), records.end());
        argv.push_back("--user=" + std::string(::getuid() == 0 ? "root" : ""));
        argv.push_back("--pid-file=");
        process = std::make_unique<child>(argv, false);
        using namespace relaybait::relay;
        resolver_options o{{server()}, std::chrono::milliseconds(200), 1};
        wait_for([&] {
            auto r = run<address_result>([&](boost::asio::any_io_executor ex) -> boost::asio::awaitable<address_result> {
                resolver res(ex, o);
                co_return co_await res.addresses("mx.example.test");
            });
            return r.status == dns_status::ok;
        }, std::chrono::seconds(10));
    }
    std::string server() const { return "127.0.0.1:" + std::to_string(port); }
};

}  // namespace relay_test
