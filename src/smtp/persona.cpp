#include "smtp/persona.hpp"

namespace relaybait::smtp {

std::string persona::fill(std::string_view tmpl, std::initializer_list<std::string_view> args) {
    std::string out;
    out.reserve(tmpl.size() + 32);
    auto arg = args.begin();
    std::size_t pos = 0;
    while (pos < tmpl.size()) {
        std::size_t brace = tmpl.find("{}", pos);
        if (brace == std::string_view::npos) {
            out.append(tmpl.substr(pos));
            break;
        }
        out.append(tmpl.substr(pos, brace - pos));
        if (arg != args.end()) out.append(*arg++);
        pos = brace + 2;
    }
    return out;
}

const listener_profile& persona::profile(listener_kind kind) const {
    switch (kind) {
    case listener_kind::smtps: return smtps_profile;
    case listener_kind::submission: return submission_profile;
    case listener_kind::smtp: break;
    }
    return smtp_profile;
}

std::string persona::cram_challenge(std::uint64_t random, std::uint64_t unix_time, std::string_view host) const {
    // Cyrus SASL cram.c: "<%lu.%lu@%s>" with a random number and time() % 0xFFFFFF.
    return "<" + std::to_string(random & 0xFFFFFFFFu) + "." + std::to_string(unix_time % 0xFFFFFF) + "@" +
           std::string(host) + ">";
}

namespace {

persona make_postfix_3_7() {
    persona p;
    p.name = "postfix-3.7";
    p.banner = "220 {} ESMTP Postfix";
    p.helo_ok = "250 {}";
    p.ehlo_before_starttls = {"PIPELINING", "SIZE {}", "VRFY", "ETRN"};
    p.ehlo_starttls = "STARTTLS";
    p.ehlo_auth = "AUTH PLAIN LOGIN CRAM-MD5";
    p.ehlo_after_auth = {"ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"};
    p.auth_mechanisms = {"PLAIN", "LOGIN", "CRAM-MD5"};
    p.ok = "250 2.0.0 Ok";
    p.mail_ok = "250 2.1.0 Ok";
    p.rcpt_ok = "250 2.1.5 Ok";
    p.bye = "221 2.0.0 Bye";
    p.helo_syntax = "501 Syntax: HELO hostname";
    p.ehlo_syntax = "501 Syntax: EHLO hostname";
    p.bad_syntax = "500 5.5.2 Error: bad syntax";
    p.bad_utf8 = "500 5.5.2 Error: bad UTF-8 syntax";
    p.unknown_command = "500 5.5.2 Error: command not recognized";
    p.forbidden_command = "221 2.7.0 Error: I can break rules, too. Goodbye.";
    p.too_many_errors = "421 4.7.0 {} Error: too many errors";
    p.too_many_commands = "421 4.7.0 {} Error: too many requests from {}";
    p.too_much_mail = "421 4.7.0 {} Error: too much mail from {}";
    p.timeout = "421 4.4.2 {} Error: timeout exceeded";
    p.busy = "421 4.7.0 {} Error: too many connections from {}";
    p.must_starttls = "530 5.7.0 Must issue a STARTTLS command first";
    p.forbidden_words = {"CONNECT", "GET", "POST"};
    p.forbid_non_letter_start = true;
    p.mail_syntax = "501 5.5.4 Syntax: MAIL FROM:<address>";
    p.rcpt_syntax = "501 5.5.4 Syntax: RCPT TO:<address>";
    p.bad_sender = "501 5.1.7 Bad sender address syntax";
    p.bad_recipient = "501 5.1.3 Bad recipient address syntax";
    p.nested_mail = "503 5.5.1 Error: nested MAIL command";
    p.need_mail = "503 5.5.1 Error: need MAIL command";
    p.bad_size_syntax = "501 5.5.4 Bad message size syntax";
    p.size_too_big_fs = "552 5.3.4 Message size exceeds file system imposed limit";
    p.size_exceeded = "552 5.3.4 Message size exceeds fixed limit";
    p.unsupported_option = "555 5.5.4 Unsupported option: {}";
    p.bad_ret = "501 5.5.4 Bad RET parameter syntax";
    p.bad_envid = "501 5.5.4 Bad ENVID parameter syntax";
    p.bad_notify = "501 5.5.4 Error: Bad NOTIFY parameter syntax";
    p.bad_orcpt = "501 5.5.4 Error: Bad ORCPT parameter syntax";
    p.auth_param_disabled = "503 5.5.4 Error: authentication disabled";
    p.too_many_recipients = "452 4.5.3 Error: too many recipients";
    p.access_denied = "554 5.7.1 <{}>: Recipient address rejected: Access denied";
    p.user_unknown = "550 5.1.1 <{}>: Recipient address rejected: User unknown in local recipient table";
    p.need_rcpt = "503 5.5.1 Error: need RCPT command";
    p.no_valid_recipients = "554 5.5.1 Error: no valid recipients";
    p.data_syntax = "501 5.5.4 Syntax: DATA";
    p.data_go = "354 End data with <CR><LF>.<CR><LF>";
    p.queued = "250 2.0.0 Ok: queued as {}";
    p.data_after_bdat = "503 5.5.1 Error: DATA after BDAT";
    p.bdat_syntax = "521 5.5.4 Syntax: BDAT count [LAST]";
    p.bdat_ok = "250 2.0.0 Ok: {} bytes";
    p.bdat_queued = "250 2.0.0 Ok: {} bytes queued as {}";
    p.bdat_discarded = "551 5.0.0 Discarded {} bytes after earlier error";
    p.queue_write_error = "451 4.3.0 Error: queue file write error";
    p.rset_syntax = "501 5.5.4 Syntax: RSET";
    p.vrfy_syntax = "501 5.5.4 Syntax: VRFY address [SMTPUTF8]";
    p.vrfy_ok = "252 2.0.0 {}";
    p.etrn_syntax = "500 Syntax: ETRN domain";
    p.etrn_in_mail = "503 Error: MAIL transaction in progress";
    p.etrn_bad = "501 Error: invalid parameter syntax";
    p.etrn_refused = "459 <{}>: service unavailable";
    p.xclient_denied = "550 5.7.0 Error: insufficient authorization";
    p.starttls_syntax = "501 5.5.4 Syntax: STARTTLS";
    p.tls_ready = "220 2.0.0 Ready to start TLS";
    p.tls_already_active = "554 5.5.1 Error: TLS already active";
    p.tls_not_available = "502 5.5.1 Error: command not implemented";
    p.auth_ok = "235 2.7.0 Authentication successful";
    p.auth_failed = "535 5.7.8 Error: authentication failed: authentication failure";
    p.auth_no_mechanism = "535 5.7.8 Error: authentication failed: no mechanism available";
    p.auth_bad_protocol = "535 5.7.8 Error: authentication failed: bad protocol / cancel";
    p.auth_incomplete = "535 5.7.8 Error: authentication failed: another step is needed in authentication";
    p.auth_temp_failure = "454 4.7.0 Temporary authentication failure: generic failure";
    p.auth_aborted = "501 5.7.0 Authentication aborted";
    p.auth_syntax = "501 5.5.4 Syntax: AUTH mechanism";
    p.auth_already = "503 5.5.1 Error: already authenticated";
    p.auth_in_mail = "503 5.5.1 Error: MAIL transaction in progress";
    p.auth_not_enabled = "503 5.5.1 Error: authentication not enabled";
    p.auth_needs_tls = "504 5.5.4 Encryption required for requested authentication mechanism";
    p.plain_prompt = "334 ";
    p.login_user_prompt = "334 VXNlcm5hbWU6";
    p.login_password_prompt = "334 UGFzc3dvcmQ6";
    // Debian 12 base-passwd users, common service users, and the usual aliases.
    p.default_local_users = {"root",          "daemon",     "bin",       "sys",          "sync",
                             "games",         "man",        "lp",        "mail",         "news",
                             "uucp",          "proxy",      "www-data",  "backup",       "list",
                             "irc",           "_apt",       "nobody",    "systemd-network", "systemd-timesync",
                             "messagebus",    "sshd",       "postfix",   "postmaster",   "abuse",
                             "hostmaster",    "webmaster",  "mailer-daemon", "staff"};
    // Ports as in Debian's master.cf: smtp (25), submissions (465, wrapper mode), submission (587).
    p.smtp_profile = {.offer_starttls = true, .enforce_tls = false, .auth_requires_tls = false,
                      .relay_requires_auth = false, .reject_unlisted_recipient = true};
    p.smtps_profile = {.offer_starttls = false, .enforce_tls = false, .auth_requires_tls = false,
                       .relay_requires_auth = true, .reject_unlisted_recipient = false};
    p.submission_profile = {.offer_starttls = true, .enforce_tls = true, .auth_requires_tls = true,
                            .relay_requires_auth = true, .reject_unlisted_recipient = false};
    return p;
}

}  // namespace

const persona& persona::postfix_3_7() {
    static const persona instance = make_postfix_3_7();
    return instance;
}

const persona* persona::find(std::string_view name) {
    if (name == "postfix-3.7" || name == "postfix") return &postfix_3_7();
    return nullptr;
}

}  // namespace relaybait::smtp
