#pragma once
// Every bound the SMTP engine and the network layer enforce, in one place.
// Defaults are Postfix 3.7's (the persona we imitate) unless noted.
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace relaybait::smtp {

struct limits {
    // Postfix line_length_limit: a command line longer than this is cut and the rest skipped.
    // RFC 5321 4.5.3.1.4 asks for at least 512; Postfix allows 2048.
    std::size_t line_length = 2048;
    // Postfix message_size_limit, advertised as SIZE (RFC 1870) and enforced on the bytes received.
    std::uint64_t message_size = 10'240'000;
    // Postfix smtpd_recipient_limit (RFC 5321 4.5.3.1.8 asks for at least 100).
    std::size_t recipients_per_message = 1000;
    // Postfix smtpd_recipient_overshoot_limit: 452s past the recipient limit that are not errors.
    std::size_t recipient_overshoot = 1000;
    // Postfix smtpd_junk_command_limit: NOOP/VRFY/ETRN/RSET/HELO/EHLO beyond this count as errors.
    std::size_t junk_commands = 100;
    // Postfix smtpd_sasl_response_limit: longest AUTH continuation line.
    std::size_t sasl_response_length = 12288;
    // Not a Postfix limit: a honeypot session should not ingest an unbounded campaign.
    std::size_t messages_per_session = 1000;
    // Not a Postfix limit: bounds the transcript and CPU one connection can cost.
    std::size_t commands_per_session = 10'000;
    // Postfix smtpd_soft_error_limit / smtpd_hard_error_limit / smtpd_error_sleep_time.
    unsigned soft_error_limit = 10;
    unsigned hard_error_limit = 20;
    std::chrono::milliseconds error_sleep{1000};
    // Postfix smtpd_timeout: idle time allowed between two reads.
    std::chrono::seconds idle_timeout{300};
    // Not a Postfix limit: total lifetime of one session.
    std::chrono::seconds session_timeout{3600};
    // Postfix smtpd_client_connection_count_limit (per client IP) and default_process_limit (overall).
    std::size_t sessions_per_ip = 50;
    std::size_t sessions_total = 5000;
    // Bytes of command transcript kept per session (the rest is counted, not stored).
    std::size_t transcript_bytes = 64 * 1024;
};

}  // namespace relaybait::smtp
