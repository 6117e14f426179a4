#pragma once
// An outbound SMTP client (Asio C++20 coroutine), the way an MTA delivers:
// connect (timeout) -> banner -> EHLO (HELO when EHLO is refused) -> opportunistic STARTTLS
// -> EHLO again -> MAIL FROM (BODY=8BITMIME when offered and the message has 8-bit bytes,
// SIZE= when offered) -> RCPT TO each -> DATA (dot-stuffed, CRLF, bytes otherwise intact)
// -> QUIT. Every line is recorded with a timestamp ('C' sent, 'S' received, 'I' info).
//
// TLS is opportunistic (RFC 7435): the certificate is verified against the system CA store
// and the MX host name, the result is recorded, and the message is delivered even when
// verification fails. Port 465 style implicit TLS when target.implicit_tls.
//
// Results per recipient: delivered (2xx after DATA), permanent (5xx), temporary (4xx,
// network errors, timeouts, protocol violations). Nothing from the server is trusted:
// replies are bounded (line 2,048 bytes, 100 lines), every step has a deadline, and so has
// the whole session (smtp_client_options::session_deadline).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "store/records.hpp"

namespace relaybait::relay {

enum class delivery_outcome { delivered, temporary, permanent };
const char* to_string(delivery_outcome outcome);

// 2xx delivered, 5xx permanent, everything else (4xx, 0 = no reply) temporary.
delivery_outcome classify_reply(int code);

struct smtp_target {
    boost::asio::ip::address ip;
    std::uint16_t port = 25;
    bool implicit_tls = false;  // TLS from the first byte (port 465)
    std::string host_name;      // the MX name: SNI and certificate name check ("" for none)
};

struct smtp_client_options {
    std::string helo_name = "localhost";  // what we say in EHLO: the sensor's hostname
    std::chrono::milliseconds connect_timeout{30'000};
    std::chrono::milliseconds command_timeout{120'000};  // per reply (RFC 5321 4.5.3.2 says 5 min)
    std::chrono::milliseconds data_timeout{300'000};     // sending the body + its final reply
    // The whole session (connect to QUIT) ends by this time whatever the per-step timeouts
    // allow: a tarpit answering one byte short of every timeout cannot hold it longer. When it
    // passes, the socket is closed and the recipients are temporary failures
    // ("session deadline passed"). max(): only the per-step timeouts.
    std::chrono::steady_clock::time_point session_deadline = std::chrono::steady_clock::time_point::max();
    bool starttls = true;  // use STARTTLS when offered
    std::shared_ptr<boost::asio::ssl::context> tls_context;  // null: make_client_tls_context()
};

// TLS client context: TLS 1.2+, system CA store, verify_peer with a callback that records
// but never aborts (opportunistic TLS).
std::shared_ptr<boost::asio::ssl::context> make_client_tls_context();

struct recipient_result {
    std::string recipient;
    delivery_outcome outcome = delivery_outcome::temporary;
    int code = 0;
    std::string reply;  // the reply that decided it (all lines joined by '\n')
};

struct delivery_result {
    bool connected = false;
    int code = 0;        // the last reply received
    std::string reply;
    std::string error;   // network/protocol failure, empty otherwise
    std::string tls_version, tls_cipher;
    bool tls_verified = false;
    std::string tls_verify_result;  // OpenSSL's verification result text, "" without TLS
    bool tls_failed = false;        // STARTTLS handshake failed (retry without STARTTLS)
    // The whole message and its final dot were written, and no reply to them came back (timeout,
    // connection lost): the server may have accepted it. Sending it again could deliver a copy.
    bool outcome_unknown = false;
    std::vector<recipient_result> recipients;
    std::vector<store::transcript_line> transcript;
};

// Delivers `message` (the bytes as they should arrive, CRLF lines, not dot-stuffed) to every
// recipient over one connection. Never throws for network or protocol problems.
boost::asio::awaitable<delivery_result> deliver(smtp_target target, std::string mail_from,
                                                std::vector<std::string> recipients,
                                                std::shared_ptr<const std::string> message,
                                                smtp_client_options options);

// The DATA payload: LF-only line ends become CRLF, lines starting with '.' get another '.',
// a final CRLF is added if missing, then ".\r\n". Every other byte is kept (8-bit intact).
std::string smtp_data_payload(std::string_view message);

// JSON array [{"at","dir","text"}] (text made valid UTF-8) for relay_attempts.transcript.
std::string transcript_json(const std::vector<store::transcript_line>& transcript);

}  // namespace relaybait::relay
