#pragma once
// The ESMTP engine: a pure state machine. Bytes from the client go in, reply bytes and
// requests for the network layer come out. It owns no socket, file or clock of its own, so
// it can be unit-tested and fuzzed byte by byte, and replayed against captured dialogues.
//
// Contract with the network layer (src/net):
//   1. write greeting() (the 220 banner) once the connection (and, on smtps, TLS) is up.
//   2. loop: read bytes, call feed(bytes, out); write out.replies (honouring each
//      reply's delay_before), then act on out.request:
//        - none: read more input;
//        - start_tls: flush replies, drop any buffered unread input, handshake, call tls_started();
//        - commit_message: the message body has been streamed into the message_sink; make
//          it durable, then call message_committed(queue_id) or message_failed();
//        - close: flush replies and close the connection (abort = send RST instead of FIN).
//      feed() consumes input up to the point where it issued a request; the caller keeps the
//      unconsumed tail and feeds it again after the request is served.
//   3. on idle/session timeout call timeout_reply() for the reply to send before closing.
//
// Notes on the implementation (smtp/engine.cpp), no signature changes:
//   - the engine keeps a pointer to the engine_config (and its persona): both must outlive it.
//   - after commit_message, feed() returns at once (consumed 0) until message_committed()/
//     message_failed(); after start_tls, until tls_started(); after close, always.
//   - on start_tls, consumed == the whole input: pipelined plaintext is discarded (RFC 3207).
//   - a message still open in the sink when the engine is destroyed is discard()ed.
//   - DATA bytes go to the sink unstuffed with their line ends as received (CRLF, or the bare
//     LF Postfix 3.7 also accepts), so smuggling attempts stay visible in the stored message.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/limits.hpp"

namespace relaybait::smtp {

enum class listener_kind { smtp, smtps, submission };
std::string_view to_string(listener_kind kind);

// Facts about the connection the engine cannot learn from the bytes it is fed.
struct connection_facts {
    listener_kind listener = listener_kind::smtp;
    std::string local_hostname;  // the name in banner, EHLO and Received
    std::string peer_ip;
    std::uint16_t peer_port = 0;
    std::string local_ip;
    std::uint16_t local_port = 0;
    bool tls_active = false;  // true from the start on smtps
};

struct tls_facts {
    std::string version;  // "TLSv1.3"
    std::string cipher;   // "TLS_AES_256_GCM_SHA384"
};

// Whether AUTH succeeds. The default (accept_all) lets spammers in, which is the point of
// the honeypot, but accepting any garbage credential is itself a tell a careful scanner can use.
struct auth_policy {
    enum class mode { accept_all, accept_after_failures, accept_listed, reject_all };
    mode policy = mode::accept_all;
    unsigned failures_before_accept = 2;  // accept_after_failures: the N+1th attempt succeeds
    std::vector<std::pair<std::string, std::string>> accepted_pairs;  // accept_listed
};

// One AUTH exchange as the client sent it.
struct credential {
    std::string mechanism;  // PLAIN, LOGIN, CRAM-MD5
    std::string authzid;    // PLAIN only
    std::string username;
    std::string password;   // CRAM-MD5: the hex digest the client sent
    std::string challenge;  // CRAM-MD5: the challenge we issued (decoded)
    std::string raw;        // every base64 line the client sent, space separated
    bool accepted = false;
};

struct recipient {
    std::string address;     // as given between < >, unquoted
    std::string parameters;  // NOTIFY=..., ORCPT=...
};

struct envelope {
    std::string mail_from;  // "" for the null sender <>
    std::string mail_parameters;  // SIZE=..., BODY=..., SMTPUTF8, ...
    std::vector<recipient> recipients;
    std::string helo_name;
    std::string helo_verb;  // HELO or EHLO
    std::optional<credential> auth;
    bool via_bdat = false;
};

// Something the engine observed that the session log and the event stream care about.
struct observation {
    enum class kind {
        command,        // one command line (text = the line, truncated to the line limit)
        helo,           // text = the HELO/EHLO argument
        auth,           // credential captured (see envelope.auth / last_credential())
        mail_from,      // text = address
        rcpt_to,        // text = address
        message_begin,  // DATA/BDAT accepted for a new message
        http_probe,     // an HTTP request line (GET/POST/CONNECT/header) was sent
        tls_requested,  // STARTTLS accepted
        limit_hit,      // text names the limit
        protocol_error, // text = the reply that was sent
        policy,         // the stage policy refused or ended the command; text = the stage
    };
    kind what;
    std::string text;
};

// A reply to write, with the delay Postfix puts before it once the soft error limit is passed.
struct reply {
    std::string text;  // one or more complete CRLF-terminated lines
    std::chrono::milliseconds delay_before{0};
};

enum class request { none, start_tls, commit_message, close };

struct output {
    std::vector<reply> replies;
    std::vector<observation> observations;
    request next = request::none;
    bool abort_connection = false;   // with close: reset instead of an orderly close
    std::size_t consumed = 0;        // bytes of the fed input that were processed
    void clear() { replies.clear(); observations.clear(); next = request::none; abort_connection = false; consumed = 0; }
};

// Where the unstuffed message body goes while DATA or BDAT streams in; the engine never
// holds a whole message. The network layer implements it on top of the store.
class message_sink {
public:
    virtual ~message_sink() = default;
    virtual void begin(const envelope& env) = 0;
    virtual void append(std::string_view bytes) = 0;  // message bytes, CRLF line ends, unstuffed
    virtual void discard() = 0;                       // transaction aborted (RSET, limit, close)
};

// Sources of nondeterminism, injected so tests are hermetic.
class environment {
public:
    virtual ~environment() = default;
    virtual std::chrono::system_clock::time_point now() = 0;
    virtual std::uint64_t random() = 0;
};

// The policy layer (the rule engine) decides at the SMTP stages, like Haraka's hooks: carry on,
// answer with a reply of its choosing (a 4xx/5xx refuses the command and leaves the state as it
// was), or answer and disconnect; any verdict may also slow the reply down (tarpit). It is
// called synchronously from feed(), so it must be pure and bounded (rule evaluation is).
// The connect stage is the network layer's: it decides before the banner is written.
enum class stage { ehlo, auth, mail, rcpt };
std::string_view to_string(stage at);

struct stage_verdict {
    enum class kind { proceed, reply, disconnect };
    kind what = kind::proceed;
    std::string reply;                   // "550 5.7.1 Rejected" (no CRLF); for reply and disconnect
    std::chrono::milliseconds delay{0};  // tarpit before this command's reply
};

class stage_policy {
public:
    virtual ~stage_policy() = default;
    // `argument`: the HELO name, the AUTH user, the MAIL FROM or the RCPT TO address.
    virtual stage_verdict decide(stage at, const connection_facts& facts, const envelope& env,
                                 const std::optional<credential>& auth, std::string_view argument) = 0;
};

class persona;  // reply texts and behaviour of the imitated MTA (smtp/persona.hpp)

struct engine_config {
    const persona* imitated = nullptr;  // defaults to the built-in Postfix 3.7 persona
    limits bounds;
    auth_policy auth;
    // Recipients accepted at the local domains (hostname, localhost); others there are "User unknown".
    std::vector<std::string> local_users;
};

class engine {
public:
    engine(const engine_config& config, connection_facts facts, message_sink& sink, environment& env);
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    std::string greeting();

    // Process as much input as possible; see the contract above.
    void feed(std::string_view input, output& out);

    // Completion of requests.
    void tls_started(const tls_facts& tls, output& out);
    void message_committed(std::string_view queue_id, output& out);
    // The same, with the policy's verdict at DATA end (the message is stored either way):
    // proceed = the normal 250; reply = this reply instead (e.g. a 451 or 550 to simulate a
    // failure; a 4xx/5xx counts as an error like Postfix's); disconnect = the reply, then close.
    // delay = tarpit before the reply.
    void message_committed(std::string_view queue_id, const stage_verdict& verdict, output& out);
    // The stage policy this engine asks (a session's own policy object; not owned, must outlive
    // the engine or be replaced). None (the default, or nullptr): every stage proceeds.
    void set_policy(stage_policy* policy);
    void message_failed(output& out);  // storage failed: a 451 temporary failure, nothing acknowledged

    // Idle or session timeout: the reply to send before closing (Postfix: 421 ... timeout).
    std::string timeout_reply() const;
    // Too many connections, sent instead of the banner (Postfix: 421 4.7.0 ... try again later).
    std::string busy_reply() const;

    // State the network layer needs for logging and storage.
    const envelope& current_envelope() const;
    const std::vector<credential>& credentials() const;  // every AUTH attempt, in order
    std::optional<tls_facts> tls() const;
    std::uint64_t bytes_received() const;
    std::size_t messages_accepted() const;
    unsigned errors() const;
    bool in_message() const;  // between DATA/BDAT and the end of the message

private:
    struct state;
    std::unique_ptr<state> state_;
};

}  // namespace relaybait::smtp
