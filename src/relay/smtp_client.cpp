#include "relay/smtp_client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>

#include "events/event_log.hpp"
#include "events/json_safe.hpp"

namespace relaybait::relay {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;

const char* to_string(delivery_outcome outcome) {
    switch (outcome) {
        case delivery_outcome::delivered: return "delivered";
        case delivery_outcome::temporary: return "temporary";
        case delivery_outcome::permanent: return "permanent";
    }
    return "unknown";
}

delivery_outcome classify_reply(int code) {
    if (code >= 200 && code < 300) return delivery_outcome::delivered;
    if (code >= 500 && code < 600) return delivery_outcome::permanent;
    return delivery_outcome::temporary;
}

std::shared_ptr<ssl::context> make_client_tls_context() {
    auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
    context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                         ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    boost::system::error_code ignored;
    context->set_default_verify_paths(ignored);
    context->set_verify_mode(ssl::verify_peer);
    // Opportunistic TLS: record the verification result, never abort on it.
    context->set_verify_callback([](bool, ssl::verify_context&) { return true; });
    return context;
}

std::string smtp_data_payload(std::string_view message) {
    std::string out;
    out.reserve(message.size() + message.size() / 50 + 8);
    bool line_start = true;
    for (std::size_t i = 0; i < message.size(); ++i) {
        const char c = message[i];
        if (line_start && c == '.') out += '.';
        if (c == '\n') {
            if (out.empty() || out.back() != '\r') out += '\r';
            out += '\n';
            line_start = true;
            continue;
        }
        out += c;
        line_start = false;
    }
    if (!line_start) out += "\r\n";
    out += ".\r\n";
    return out;
}

std::string transcript_json(const std::vector<store::transcript_line>& transcript) {
    boost::json::array array;
    for (const auto& line : transcript) {
        boost::json::object o;
        o["at"] = line.at;
        o["dir"] = std::string(1, line.direction);
        o["text"] = events::to_json_safe(line.text);
        array.emplace_back(std::move(o));
    }
    return boost::json::serialize(array);
}

namespace {

constexpr std::size_t max_line = 2048;
constexpr std::size_t max_reply_lines = 100;

struct reply {
    int code = 0;
    std::vector<std::string> lines;
    std::string text() const {
        std::string all;
        for (const auto& l : lines) all += (all.empty() ? "" : "\n") + l;
        return all;
    }
};

class connection : public std::enable_shared_from_this<connection> {
public:
    connection(asio::any_io_executor ex, delivery_result& result, asio::steady_timer::time_point session_deadline)
        : socket_(ex), deadline_timer_(ex), result_(result), session_deadline_(session_deadline) {}

    tcp::socket socket_;
    std::unique_ptr<ssl::stream<tcp::socket&>> tls_;
    asio::steady_timer deadline_timer_;
    delivery_result& result_;
    std::string buffer_;
    bool timed_out_ = false;
    bool finished_ = false;
    asio::steady_timer::time_point session_deadline_;  // smtp_client_options::session_deadline

    void note(char dir, std::string text) {
        if (result_.transcript.size() >= 500) return;  // bounded
        result_.transcript.push_back({events::iso8601_utc_now(), dir, std::move(text)});
    }

    // One watchdog per connection: closes the socket when the current deadline passes.
    void start_watchdog() {
        deadline_timer_.expires_at(asio::steady_timer::time_point::max());
        asio::co_spawn(socket_.get_executor(), watchdog(shared_from_this()), asio::detached);
    }
    static asio::awaitable<void> watchdog(std::shared_ptr<connection> self) {
        while (!self->finished_) {
            boost::system::error_code ec;
            co_await self->deadline_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (self->finished_) break;
            if (self->deadline_timer_.expiry() <= asio::steady_timer::clock_type::now()) {
                self->timed_out_ = true;
                boost::system::error_code ignored;
                self->socket_.close(ignored);
                self->deadline_timer_.expires_at(asio::steady_timer::time_point::max());
            }
        }
    }
    // The step's deadline, never later than the whole session's.
    void deadline(std::chrono::milliseconds d) {
        const auto now = asio::steady_timer::clock_type::now();
        const auto step = d >= session_deadline_ - now ? session_deadline_ : now + d;
        deadline_timer_.expires_at(step);
    }
    std::string timeout_text() const {
        return asio::steady_timer::clock_type::now() >= session_deadline_ ? "session deadline passed" : "timeout";
    }
    void finish() {
        finished_ = true;
        deadline_timer_.cancel();
        boost::system::error_code ignored;
        socket_.close(ignored);
    }

    asio::awaitable<std::size_t> read_some(char* data, std::size_t size, boost::system::error_code& ec) {
        if (tls_) co_return co_await tls_->async_read_some(asio::buffer(data, size), asio::redirect_error(asio::use_awaitable, ec));
        co_return co_await socket_.async_read_some(asio::buffer(data, size), asio::redirect_error(asio::use_awaitable, ec));
    }
    asio::awaitable<void> write(std::string_view bytes, boost::system::error_code& ec) {
        if (tls_) {
            co_await asio::async_write(*tls_, asio::buffer(bytes.data(), bytes.size()), asio::redirect_error(asio::use_awaitable, ec));
        } else {
            co_await asio::async_write(socket_, asio::buffer(bytes.data(), bytes.size()), asio::redirect_error(asio::use_awaitable, ec));
        }
    }

    // Reads one line (without CRLF). False on error/EOF/over-long line (error text in result_).
    asio::awaitable<bool> read_line(std::string& line) {
        for (;;) {
            const auto lf = buffer_.find('\n');
            if (lf != std::string::npos) {
                line = buffer_.substr(0, lf);
                if (!line.empty() && line.back() == '\r') line.pop_back();
                buffer_.erase(0, lf + 1);
                co_return true;
            }
            if (buffer_.size() > max_line) {
                result_.error = "reply line too long";
                co_return false;
            }
            char chunk[4096];
            boost::system::error_code ec;
            const std::size_t n = co_await read_some(chunk, sizeof chunk, ec);
            if (ec || n == 0) {
                result_.error = timed_out_ ? timeout_text() : (ec ? ec.message() : "connection closed");
                co_return false;
            }
            buffer_.append(chunk, n);
        }
    }

    asio::awaitable<reply> read_reply(std::chrono::milliseconds timeout) {
        deadline(timeout);
        reply r;
        for (;;) {
            std::string line;
            if (!co_await read_line(line)) {
                r.code = 0;
                co_return r;
            }
            note('S', line);
            const bool digits = line.size() >= 3 && std::all_of(line.begin(), line.begin() + 3, [](char c) { return c >= '0' && c <= '9'; });
            if (!digits || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
                result_.error = "malformed reply";
                r.code = 0;
                co_return r;
            }
            const int code = std::stoi(line.substr(0, 3));
            if (r.lines.empty()) r.code = code;
            r.lines.push_back(line.size() > 4 ? line.substr(4) : "");
            if (line.size() == 3 || line[3] == ' ') break;
            if (r.lines.size() >= max_reply_lines) {
                result_.error = "reply too long";
                r.code = 0;
                co_return r;
            }
        }
        result_.code = r.code;
        result_.reply = std::to_string(r.code) + " " + r.text();
        co_return r;
    }

    asio::awaitable<reply> command(const std::string& line, std::chrono::milliseconds timeout) {
        note('C', line);
        deadline(timeout);
        boost::system::error_code ec;
        co_await write(line + "\r\n", ec);
        if (ec) {
            result_.error = timed_out_ ? timeout_text() : ec.message();
            co_return reply{};
        }
        co_return co_await read_reply(timeout);
    }

    asio::awaitable<bool> handshake(const std::string& host_name, ssl::context& context, std::chrono::milliseconds timeout) {
        tls_ = std::make_unique<ssl::stream<tcp::socket&>>(socket_, context);
        SSL* ssl_handle = tls_->native_handle();
        boost::system::error_code parse_error;
        (void)asio::ip::make_address(host_name, parse_error);
        if (!host_name.empty() && parse_error) {
            SSL_set_tlsext_host_name(ssl_handle, host_name.c_str());
            SSL_set1_host(ssl_handle, host_name.c_str());
        }
        deadline(timeout);
        boost::system::error_code ec;
        co_await tls_->async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
            note('I', "TLS handshake failed: " + (timed_out_ ? timeout_text() : ec.message()));
            result_.error = "TLS handshake failed";
            result_.tls_failed = true;
            tls_.reset();
            co_return false;
        }
        result_.tls_version = SSL_get_version(ssl_handle);
        result_.tls_cipher = SSL_get_cipher_name(ssl_handle);
        const long verify = SSL_get_verify_result(ssl_handle);
        X509* peer = SSL_get1_peer_certificate(ssl_handle);
        result_.tls_verified = verify == X509_V_OK && peer != nullptr;
        result_.tls_verify_result = peer ? X509_verify_cert_error_string(verify) : "no peer certificate";
        if (peer) X509_free(peer);
        note('I', "TLS established: " + result_.tls_version + " " + result_.tls_cipher + "; certificate " +
                      (result_.tls_verified ? "verified" : "not verified (" + result_.tls_verify_result + ")"));
        buffer_.clear();  // RFC 3207: discard anything received before the handshake
        co_return true;
    }
};

bool has_8bit(std::string_view bytes) {
    return std::any_of(bytes.begin(), bytes.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

bool safe_address(std::string_view address) {
    return address.size() <= 512 && address.find_first_of("\r\n<>") == std::string_view::npos;
}

struct ehlo_facts {
    bool ok = false;
    bool starttls = false, eightbit = false, size = false;
};

ehlo_facts parse_ehlo(const reply& r) {
    ehlo_facts f;
    f.ok = r.code >= 200 && r.code < 300;
    for (std::size_t i = 1; i < r.lines.size(); ++i) {
        std::string keyword = r.lines[i].substr(0, r.lines[i].find(' '));
        std::transform(keyword.begin(), keyword.end(), keyword.begin(), [](unsigned char c) { return std::toupper(c); });
        if (keyword == "STARTTLS") f.starttls = true;
        if (keyword == "8BITMIME") f.eightbit = true;
        if (keyword == "SIZE") f.size = true;
    }
    return f;
}

void fail_all(delivery_result& result, const std::vector<std::string>& recipients, int code, const std::string& text) {
    result.recipients.clear();
    for (const auto& rcpt : recipients) result.recipients.push_back({rcpt, classify_reply(code), code, text});
}

asio::awaitable<void> run(std::shared_ptr<connection> c, smtp_target target, std::string mail_from,
                          std::vector<std::string> recipients, std::shared_ptr<const std::string> message,
                          smtp_client_options options) {
    delivery_result& result = c->result_;
    auto error_text = [&] { return result.error.empty() ? std::string("protocol error") : result.error; };
    if (!safe_address(mail_from) ||
        std::any_of(recipients.begin(), recipients.end(), [](const std::string& r) { return !safe_address(r); })) {
        result.error = "invalid address";
        fail_all(result, recipients, 550, "invalid address (not sent)");
        co_return;
    }
    if (!options.tls_context) options.tls_context = make_client_tls_context();

    const tcp::endpoint endpoint(target.ip, target.port);
    c->note('I', "connecting to " + (target.host_name.empty() ? std::string() : target.host_name + " ") + "[" +
                     target.ip.to_string() + "]:" + std::to_string(target.port));
    c->deadline(options.connect_timeout);
    boost::system::error_code ec;
    co_await c->socket_.async_connect(endpoint, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        result.error = "connect: " + (c->timed_out_ ? c->timeout_text() : ec.message());
        c->note('I', result.error);
        fail_all(result, recipients, 0, result.error);
        co_return;
    }
    result.connected = true;
    if (target.implicit_tls && !co_await c->handshake(target.host_name, *options.tls_context, options.command_timeout)) {
        fail_all(result, recipients, 0, error_text());
        co_return;
    }

    reply r = co_await c->read_reply(options.command_timeout);
    if (r.code != 220) {
        // A refusing or broken greeting: this host, not the recipient, is the problem: try the
        // next MX (temporary), whatever the code.
        if (r.code != 0) co_await c->command("QUIT", std::chrono::milliseconds(5000));
        fail_all(result, recipients, r.code >= 500 ? 421 : r.code, r.code ? std::to_string(r.code) + " " + r.text() : error_text());
        co_return;
    }

    auto greet = [&]() -> asio::awaitable<ehlo_facts> {
        reply e = co_await c->command("EHLO " + options.helo_name, options.command_timeout);
        if (e.code >= 500 && e.code < 600) {
            e = co_await c->command("HELO " + options.helo_name, options.command_timeout);
            ehlo_facts f;
            f.ok = e.code >= 200 && e.code < 300;
            if (!f.ok) fail_all(result, recipients, e.code, e.code ? std::to_string(e.code) + " " + e.text() : error_text());
            co_return f;
        }
        ehlo_facts f = parse_ehlo(e);
        if (!f.ok) fail_all(result, recipients, e.code, e.code ? std::to_string(e.code) + " " + e.text() : error_text());
        co_return f;
    };
    ehlo_facts facts = co_await greet();
    if (!facts.ok) co_return;

    if (facts.starttls && !c->tls_ && options.starttls) {
        r = co_await c->command("STARTTLS", options.command_timeout);
        if (r.code == 220) {
            if (!co_await c->handshake(target.host_name, *options.tls_context, options.command_timeout)) {
                fail_all(result, recipients, 0, error_text());
                co_return;
            }
            facts = co_await greet();
            if (!facts.ok) co_return;
        } else if (r.code == 0) {
            fail_all(result, recipients, 0, error_text());
            co_return;
        }  // STARTTLS refused with 4xx/5xx: continue in clear text (opportunistic)
    }

    std::string mail = "MAIL FROM:<" + mail_from + ">";
    if (facts.eightbit && has_8bit(*message)) mail += " BODY=8BITMIME";
    if (facts.size) mail += " SIZE=" + std::to_string(message->size());
    r = co_await c->command(mail, options.command_timeout);
    if (r.code < 200 || r.code >= 300) {
        fail_all(result, recipients, r.code, r.code ? std::to_string(r.code) + " " + r.text() : error_text());
        if (r.code) co_await c->command("QUIT", std::chrono::milliseconds(5000));
        co_return;
    }
    std::vector<std::string> accepted;
    result.recipients.clear();
    for (const auto& rcpt : recipients) {
        r = co_await c->command("RCPT TO:<" + rcpt + ">", options.command_timeout);
        if (r.code == 0) {
            fail_all(result, recipients, 0, error_text());
            co_return;
        }
        if (r.code >= 200 && r.code < 300) {
            accepted.push_back(rcpt);
        } else {
            result.recipients.push_back({rcpt, classify_reply(r.code), r.code, std::to_string(r.code) + " " + r.text()});
        }
    }
    if (accepted.empty()) {
        co_await c->command("QUIT", std::chrono::milliseconds(5000));
        co_return;
    }
    auto settle_accepted = [&](int code, const std::string& text) {
        for (const auto& rcpt : accepted) result.recipients.push_back({rcpt, classify_reply(code), code, text});
    };
    r = co_await c->command("DATA", options.command_timeout);
    if (r.code != 354) {
        settle_accepted(r.code == 0 || (r.code >= 200 && r.code < 300) ? 0 : r.code,
                        r.code ? std::to_string(r.code) + " " + r.text() : error_text());
        if (r.code) co_await c->command("QUIT", std::chrono::milliseconds(5000));
        co_return;
    }
    const std::string payload = smtp_data_payload(*message);
    c->note('C', "[message: " + std::to_string(message->size()) + " bytes, " + std::to_string(payload.size()) +
                     " bytes on the wire]");
    c->note('C', ".");
    c->deadline(options.data_timeout);
    co_await c->write(payload, ec);
    if (ec) {
        result.error = c->timed_out_ ? c->timeout_text() : ec.message();
        settle_accepted(0, result.error);
        co_return;
    }
    r = co_await c->read_reply(options.data_timeout);
    result.outcome_unknown = r.code == 0;
    settle_accepted(r.code, r.code ? std::to_string(r.code) + " " + r.text() : error_text());
    if (r.code) co_await c->command("QUIT", std::chrono::milliseconds(5000));
}

}  // namespace

asio::awaitable<delivery_result> deliver(smtp_target target, std::string mail_from, std::vector<std::string> recipients,
                                         std::shared_ptr<const std::string> message, smtp_client_options options) {
    delivery_result result;
    auto c = std::make_shared<connection>(co_await asio::this_coro::executor, result, options.session_deadline);
    c->start_watchdog();
    try {
        co_await run(c, std::move(target), std::move(mail_from), recipients, std::move(message), std::move(options));
    } catch (const std::exception& e) {
        result.error = std::string("client error: ") + e.what();
        fail_all(result, recipients, 0, result.error);
    }
    c->finish();
    // Any recipient left unsettled (cannot happen; defensive) counts as temporary.
    for (const auto& rcpt : recipients) {
        if (std::none_of(result.recipients.begin(), result.recipients.end(),
                         [&](const recipient_result& x) { return x.recipient == rcpt; })) {
            result.recipients.push_back({rcpt, delivery_outcome::temporary, 0, "not attempted"});
        }
    }
    c->note('I', "done");
    co_return result;
}

}  // namespace relaybait::relay
