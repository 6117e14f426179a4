#pragma once
// The imitated MTA: every reply text and behaviour switch the engine uses, in one place.
// Postfix 3.7 is built in ("postfix-3.7"); another MTA is another persona value (same fields,
// other texts and switches), selected by name through persona::find().
//
// Templates use "{}" placeholders, filled in order by persona::fill().
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/engine.hpp"

namespace relaybait::smtp {

// How one listener of the imitated MTA is configured (Postfix: main.cf + master.cf -o overrides).
struct listener_profile {
    bool offer_starttls = true;             // STARTTLS in EHLO while TLS is not active
    bool enforce_tls = false;               // smtpd_tls_security_level=encrypt: 530 before STARTTLS
    bool auth_requires_tls = false;         // smtpd_tls_auth_only: AUTH hidden/refused before TLS
    bool relay_requires_auth = false;       // smtpd_recipient_restrictions=permit_sasl_authenticated,reject
    bool reject_unlisted_recipient = true;  // "User unknown in local recipient table" at local domains
};

class persona {
public:
    std::string name;

    // Session
    std::string banner;             // {host}
    std::string helo_ok;            // {host}
    std::vector<std::string> ehlo_before_starttls;  // keywords after the hostname line; "SIZE {}" gets the limit
    std::string ehlo_starttls;
    std::string ehlo_auth;          // "AUTH " + mechanisms
    std::vector<std::string> ehlo_after_auth;
    std::vector<std::string> auth_mechanisms;  // upper case
    std::string ok, mail_ok, rcpt_ok, bye;
    std::string helo_syntax, ehlo_syntax;
    // Command line level
    std::string bad_syntax, bad_utf8, unknown_command, forbidden_command;
    std::string too_many_errors;    // {host}
    std::string too_many_commands;  // {host} {ip}
    std::string too_much_mail;      // {host} {ip}
    std::string timeout;            // {host}
    std::string busy;               // {host} {ip}
    std::string must_starttls;
    std::vector<std::string> forbidden_words;  // Postfix smtpd_forbidden_commands (besides header-like words)
    bool forbid_non_letter_start = true;       // regexp:{{/^[^A-Z]/ Bogus}}
    // MAIL / RCPT
    std::string mail_syntax, rcpt_syntax, bad_sender, bad_recipient, nested_mail, need_mail;
    std::string bad_size_syntax, size_too_big_fs, size_exceeded;
    std::string unsupported_option;  // {option}
    std::string bad_ret, bad_envid, bad_notify, bad_orcpt, auth_param_disabled;
    std::string too_many_recipients, access_denied, user_unknown;  // {address}
    // DATA / BDAT
    std::string need_rcpt, no_valid_recipients, data_syntax, data_go, queued;  // queued: {id}
    std::string data_after_bdat;
    std::string bdat_syntax, bdat_ok, bdat_queued, bdat_discarded;             // {bytes} [{id}]
    std::string queue_write_error;
    // RSET VRFY ETRN XCLIENT
    std::string rset_syntax, vrfy_syntax, vrfy_ok;  // vrfy_ok: {argument}
    std::string etrn_syntax, etrn_in_mail, etrn_bad, etrn_refused;  // etrn_refused: {domain}
    std::string xclient_denied;
    // STARTTLS
    std::string starttls_syntax, tls_ready, tls_already_active, tls_not_available;
    // AUTH
    // auth_incomplete: base64 ending in a partial group (Cyrus SASL_CONTINUE); auth_temp_failure:
    // the Cyrus answer to LOGIN with an empty username.
    std::string auth_ok, auth_failed, auth_no_mechanism, auth_bad_protocol, auth_incomplete, auth_temp_failure,
        auth_aborted, auth_syntax,
        auth_already, auth_in_mail, auth_not_enabled, auth_needs_tls;
    std::string plain_prompt, login_user_prompt, login_password_prompt;  // complete "334 ..." lines
    // Local users when engine_config.local_users is empty.
    std::vector<std::string> default_local_users;

    listener_profile smtp_profile, smtps_profile, submission_profile;
    const listener_profile& profile(listener_kind kind) const;

    // Postfix/Cyrus CRAM-MD5 challenge "<RANDOM.TIME@HOST>" (not base64 encoded).
    std::string cram_challenge(std::uint64_t random, std::uint64_t unix_time, std::string_view host) const;

    static std::string fill(std::string_view tmpl, std::initializer_list<std::string_view> args);

    static const persona& postfix_3_7();
    // nullptr if unknown.
    static const persona* find(std::string_view name);
};

}  // namespace relaybait::smtp
