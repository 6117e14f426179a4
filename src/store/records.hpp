#pragma once
// The rows relaybait keeps: what the network layer hands to the store, and what the
// operator tools read back. Plain data, no behaviour.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace relaybait::store {

// Timestamps are ISO 8601 UTC with microseconds: "2026-11-23T18:07:03.123456Z".
using timestamp = std::string;

struct transcript_line {
    timestamp at;
    char direction = 'C';  // 'C' client sent, 'S' server replied, 'I' info (TLS up, timeout, ...)
    std::string text;      // without the trailing CRLF; bytes outside printable ASCII kept as is
};

struct session_record {
    std::string id;  // random, 16 hex chars; also in events.jsonl and the X-Relaybait-Session header
    std::string sensor;
    std::string listener;  // smtp, smtps, submission
    std::string peer_ip;
    std::uint16_t peer_port = 0;
    std::string local_ip;
    std::uint16_t local_port = 0;
    timestamp started_at;
    std::optional<timestamp> ended_at;
    std::string helo_verb;
    std::string helo_name;
    std::string tls_version;  // empty when the session never used TLS
    std::string tls_cipher;
    std::vector<transcript_line> transcript;
    bool transcript_truncated = false;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint32_t commands = 0;
    std::uint32_t errors = 0;
    std::uint32_t messages = 0;
    std::string outcome;  // quit, timeout, disconnect, http_probe, too_many_errors, limit, busy, tls_failed, shutdown
};

struct credential_record {
    std::int64_t id = 0;  // assigned by the database
    std::string session_id;
    std::string peer_ip;
    timestamp at;
    std::string listener;
    std::string mechanism;
    std::string authzid;
    std::string username;
    std::string password;
    std::string challenge;  // CRAM-MD5
    std::string raw;        // the base64 exactly as sent
    bool accepted = false;
};

struct message_headers {
    std::string subject, from, to, date, message_id, x_mailer, user_agent;
};

struct message_record {
    std::int64_t id = 0;  // assigned by the database
    std::string queue_id;  // Postfix-style, also in the 250 reply
    std::string session_id;
    timestamp received_at;
    std::string peer_ip;
    std::uint16_t peer_port = 0;
    std::string listener;
    std::string helo_name;
    std::string mail_from;
    std::string mail_parameters;
    std::vector<std::string> recipients;
    std::string auth_username;
    std::string tls_version;
    std::string tls_cipher;
    bool via_bdat = false;
    std::string folder;        // Maildir++ folder: "" = inbox, ".Probes", ...
    std::string maildir_path;  // relative to the data directory: maildir/new/<name>
    std::uint64_t size = 0;    // bytes as received (trace headers excluded)
    std::string sha256;        // hex, of the bytes as received
    message_headers headers;   // parsed from the message; attacker-controlled
    // The rule that classified the message at DATA end (empty when none matched), its kind
    // (probe, spam, ...) and tags; `dropped`: only this row was kept, the file was deleted
    // (maildir_path empty).
    std::string rule;
    std::string kind;
    std::vector<std::string> tags;
    bool dropped = false;
    // The rule that filed it at DATA end asked for a relay (set by the server at receipt only;
    // `rules apply` and later rules changes never set it): what the start-up recovery may
    // submit again when the relay's decision is missing.
    bool relay_requested = false;
};

}  // namespace relaybait::store
