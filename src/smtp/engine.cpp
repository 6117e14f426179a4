// The ESMTP engine: a Postfix-3.7-style smtpd state machine (see engine.hpp for the contract).
// Command dispatch follows Postfix smtpd_proto(): read a line, check the hard error limit,
// UTF-8, tokenize, look the verb up in the command table, apply the TLS requirement, run the
// handler, count errors. Reply texts and listener behaviour come from the persona.
#include "smtp/engine.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <utility>

#include "smtp/persona.hpp"
#include "smtp/syntax.hpp"

namespace relaybait::smtp {

std::string_view to_string(listener_kind kind) {
    switch (kind) {
    case listener_kind::smtp: return "smtp";
    case listener_kind::smtps: return "smtps";
    case listener_kind::submission: return "submission";
    }
    return "smtp";
}

std::string_view to_string(stage at) {
    switch (at) {
    case stage::ehlo: return "ehlo";
    case stage::auth: return "auth";
    case stage::mail: return "mail";
    case stage::rcpt: return "rcpt";
    }
    return "ehlo";
}

namespace {

using syntax::token;
using token_list = std::vector<token>;

enum class phase : std::uint8_t { command, sasl, data, bdat, awaiting_tls, awaiting_commit, closed };
enum class verdict : std::uint8_t { ok, error, pending };
enum class sasl_step : std::uint8_t { none, plain, login_user, login_password, cram };
enum class chunk_mode : std::uint8_t { store, skip_need_rcpt, skip_no_recipients, skip_after_error };

// Postfix smtpd command flags.
constexpr unsigned flag_pre_tls = 1;  // allowed before STARTTLS where TLS is enforced
constexpr unsigned flag_junk = 2;     // counts toward smtpd_junk_command_limit

constexpr std::size_t observation_text_limit = 1024;

std::string join_words(const token_list& args, std::size_t from, std::size_t to) {
    std::string out;
    for (std::size_t i = from; i < to; ++i) {
        if (i > from) out.push_back(' ');
        out += args[i].text;
    }
    return out;
}

}  // namespace

struct engine::state {
    struct command_spec {
        std::string_view name;
        unsigned flags;
        verdict (state::*handler)(const token_list&, output&);
    };

    const engine_config* config;
    stage_policy* policy = nullptr;  // engine::set_policy
    const persona* p;
    listener_profile profile;
    connection_facts facts;
    message_sink& sink;
    environment& env;

    phase ph = phase::command;
    request pending_request = request::none;
    std::string line;
    bool skipping = false;
    bool truncated = false;

    unsigned error_count = 0;
    std::size_t junk_count = 0;
    std::size_t command_count = 0;
    std::size_t messages = 0;
    std::size_t overshoot = 0;
    std::uint64_t bytes = 0;

    bool tls_active = false;
    std::unique_ptr<tls_facts> tls;  // set once TLS is up (a plain session keeps 8 bytes, not 72)
    bool authenticated = false;
    unsigned auth_failures = 0;
    std::vector<credential> creds;
    sasl_step step = sasl_step::none;
    // AUTH in progress; allocated by the first AUTH (most sessions never send one).
    std::unique_ptr<credential> pending_box;
    credential& pending() {
        if (!pending_box) pending_box = std::make_unique<credential>();
        return *pending_box;
    }

    envelope envl;
    bool in_mail = false;
    bool smtputf8 = false;
    bool sink_open = false;

    std::chrono::milliseconds tarpit{0};  // the policy's delay for the next reply

    // DATA
    bool bol = true;
    bool dot_line = false;
    std::size_t dot_crs = 0;
    std::uint64_t message_bytes = 0;
    bool too_big = false;
    char last_stored = '\n';  // last message byte stored (BDAT: the LAST chunk's line end)

    // BDAT
    bool bdat_active = false;
    bool bdat_error = false;
    bool chunk_last = false;
    chunk_mode mode = chunk_mode::store;
    std::uint64_t chunk_size = 0;
    std::uint64_t chunk_left = 0;
    std::uint64_t bdat_total = 0;

    state(const engine_config& cfg, connection_facts f, message_sink& s, environment& e)
        : config(&cfg),
          p(cfg.imitated ? cfg.imitated : &persona::postfix_3_7()),
          profile(p->profile(f.listener)),
          facts(std::move(f)),
          sink(s),
          env(e) {
        tls_active = facts.tls_active;
    }

    const limits& bounds() const { return config->bounds; }
    const std::string& host() const { return facts.local_hostname; }

    // ---- output helpers ----
    void reply(output& out, std::string text) {
        std::chrono::milliseconds delay = std::exchange(tarpit, std::chrono::milliseconds{0});
        if (error_count >= bounds().soft_error_limit) delay += bounds().error_sleep;
        text += "\r\n";
        out.replies.push_back(reply_type{std::move(text), delay});
    }
    using reply_type = smtp::reply;
    void observe(output& out, observation::kind what, std::string_view text) {
        out.observations.push_back({what, std::string(text.substr(0, std::min(text.size(), observation_text_limit)))});
    }
    void count_error(output& out) {
        ++error_count;
        if (!out.replies.empty()) {
            std::string_view last = out.replies.back().text;
            if (last.size() >= 2) last.remove_suffix(2);
            observe(out, observation::kind::protocol_error, last);
        }
    }
    void close(output& out) {
        (void)out;
        ph = phase::closed;
        pending_request = request::close;
        discard_message();
    }
    void discard_message() {
        if (sink_open) {
            sink_open = false;
            sink.discard();
        }
    }
    void open_message(output& out) {
        discard_message();
        sink.begin(envl);
        sink_open = true;
        message_bytes = 0;
        too_big = false;
        last_stored = '\n';
        observe(out, observation::kind::message_begin, envl.mail_from);
    }
    void mail_reset() {
        discard_message();
        envl.mail_from.clear();
        envl.mail_parameters.clear();
        envl.recipients.clear();
        envl.via_bdat = false;
        in_mail = false;
        smtputf8 = false;
        bdat_active = false;
        bdat_total = 0;
        message_bytes = 0;
        too_big = false;
        overshoot = 0;
    }
    bool auth_enabled() const { return !(profile.auth_requires_tls && !tls_active); }

    // Asks the policy layer; returns the verdict to end the command with when it refuses it.
    std::optional<verdict> consult(stage at, std::string_view argument, output& out) {
        if (policy == nullptr) return std::nullopt;
        stage_verdict decision = policy->decide(at, facts, envl, envl.auth, argument);
        tarpit = decision.delay;
        if (decision.what == stage_verdict::kind::proceed) return std::nullopt;
        const bool refusal = !decision.reply.empty() && (decision.reply[0] == '4' || decision.reply[0] == '5');
        if (decision.what == stage_verdict::kind::reply && !refusal) return std::nullopt;  // 2xx/3xx: carry on
        if (!decision.reply.empty()) reply(out, std::move(decision.reply));
        observe(out, observation::kind::policy, std::string(to_string(at)));
        if (decision.what == stage_verdict::kind::disconnect) {
            close(out);
            return verdict::ok;
        }
        return verdict::error;
    }

    // ---- input ----
    void feed(std::string_view in, output& out) {
        std::size_t pos = 0;
        pending_request = request::none;
        switch (ph) {
        case phase::awaiting_tls: out.next = request::start_tls; out.consumed = 0; return;
        case phase::awaiting_commit: out.next = request::commit_message; out.consumed = 0; return;
        case phase::closed: out.next = request::close; out.consumed = 0; return;
        default: break;
        }
        while (pos < in.size() && pending_request == request::none) {
            switch (ph) {
            case phase::command:
            case phase::sasl: pos = read_line(in, pos, out); break;
            case phase::data: pos = read_data(in, pos, out); break;
            case phase::bdat: pos = read_chunk(in, pos, out); break;
            default: pos = in.size(); break;
            }
        }
        if (pending_request == request::start_tls) {
            pos = in.size();  // RFC 3207: pipelined plaintext after STARTTLS is discarded
            line.clear();
            skipping = false;
            truncated = false;
        }
        bytes += pos;
        out.consumed = pos;
        out.next = pending_request;
    }

    std::size_t read_line(std::string_view in, std::size_t pos, output& out) {
        const std::size_t limit = ph == phase::sasl ? bounds().sasl_response_length : bounds().line_length;
        std::size_t nl = in.find('\n', pos);
        std::size_t end = nl == std::string_view::npos ? in.size() : nl;
        if (!skipping) {
            std::size_t room = limit > line.size() ? limit - line.size() : 0;
            std::size_t take = std::min(room, end - pos);
            line.append(in.substr(pos, take));
            if (line.size() >= limit) {
                skipping = true;  // Postfix smtp_get(SMTP_GET_FLAG_SKIP): cut here, skip to end of line
                truncated = true;
            }
        }
        if (nl == std::string_view::npos) return in.size();
        std::string text;
        text.swap(line);
        if (!truncated)
            while (!text.empty() && text.back() == '\r') text.pop_back();
        skipping = false;
        truncated = false;
        if (ph == phase::sasl)
            sasl_line(text, out);
        else
            command_line(text, out);
        return nl + 1;
    }

    // ---- command dispatch ----
    static const std::array<command_spec, 15>& command_table();

    void command_line(std::string_view text, output& out) {
        ++command_count;
        observe(out, observation::kind::command, text);
        if (error_count >= bounds().hard_error_limit) {
            reply(out, persona::fill(p->too_many_errors, {host()}));
            observe(out, observation::kind::limit_hit, "hard_error_limit");
            close(out);
            return;
        }
        if (command_count > bounds().commands_per_session) {
            reply(out, persona::fill(p->too_many_commands, {host(), facts.peer_ip}));
            observe(out, observation::kind::limit_hit, "commands_per_session");
            close(out);
            return;
        }
        if (!syntax::valid_utf8(text)) {
            reply(out, p->bad_utf8);
            count_error(out);
            return;
        }
        if (auto nul = text.find('\0'); nul != std::string_view::npos) text = text.substr(0, nul);
        token_list args = syntax::tokenize(text);
        if (args.empty()) {
            reply(out, p->bad_syntax);
            count_error(out);
            return;
        }
        const command_spec* cmd = nullptr;
        for (const auto& spec : command_table())
            if (syntax::iequals(args[0].text, spec.name)) {
                cmd = &spec;
                break;
            }
        if (cmd == nullptr) {
            unknown_command(args[0].text, text, out);
            return;
        }
        if (profile.enforce_tls && !tls_active && (cmd->flags & flag_pre_tls) == 0) {
            reply(out, p->must_starttls);
            count_error(out);
            return;
        }
        verdict v = (this->*(cmd->handler))(args, out);
        if (v == verdict::error) count_error(out);
        if ((cmd->flags & flag_junk) != 0 && junk_count++ > bounds().junk_commands) ++error_count;
    }

    void unknown_command(std::string_view verb, std::string_view text, output& out) {
        bool probe = syntax::is_header(verb) > 0;
        for (const auto& word : p->forbidden_words)
            if (syntax::iequals(verb, word)) probe = true;
        unsigned char first = static_cast<unsigned char>(verb.front());
        bool letter = (first >= 'A' && first <= 'Z') || (first >= 'a' && first <= 'z');
        if (probe || (p->forbid_non_letter_start && !letter)) {
            observe(out, probe ? observation::kind::http_probe : observation::kind::protocol_error, text);
            reply(out, p->forbidden_command);
            close(out);
            return;
        }
        reply(out, p->unknown_command);
        count_error(out);
    }

    // ---- HELO / EHLO ----
    verdict cmd_helo(const token_list& args, output& out) { return greet(args, out, false); }
    verdict cmd_ehlo(const token_list& args, output& out) { return greet(args, out, true); }
    verdict greet(const token_list& args, output& out, bool extended) {
        if (args.size() < 2) {
            reply(out, extended ? p->ehlo_syntax : p->helo_syntax);
            return verdict::error;
        }
        if (auto refused = consult(stage::ehlo, join_words(args, 1, args.size()), out)) return *refused;
        mail_reset();
        envl.helo_name = join_words(args, 1, args.size());
        envl.helo_verb = extended ? "EHLO" : "HELO";
        observe(out, observation::kind::helo, envl.helo_name);
        if (!extended) {
            reply(out, persona::fill(p->helo_ok, {host()}));
            return verdict::ok;
        }
        std::vector<std::string> lines;
        lines.push_back(host());
        std::string size = std::to_string(bounds().message_size);
        for (const auto& k : p->ehlo_before_starttls) lines.push_back(persona::fill(k, {size}));
        if (profile.offer_starttls && !tls_active) lines.push_back(p->ehlo_starttls);
        if (auth_enabled()) lines.push_back(p->ehlo_auth);
        for (const auto& k : p->ehlo_after_auth) lines.push_back(k);
        std::string text;
        for (std::size_t i = 0; i < lines.size(); ++i) {
            if (i) text += "\r\n";
            text += (i + 1 == lines.size() ? "250 " : "250-") + lines[i];
        }
        reply(out, std::move(text));
        return verdict::ok;
    }

    // ---- MAIL ----
    verdict cmd_mail(const token_list& args, output& out) {
        if (in_mail) {
            reply(out, p->nested_mail);
            return verdict::error;
        }
        if (args.size() < 3 || !syntax::iequals(args[1].text, "from:")) {
            reply(out, p->mail_syntax);
            return verdict::error;
        }
        if (messages >= bounds().messages_per_session) {
            reply(out, persona::fill(p->too_much_mail, {host(), facts.peer_ip}));
            observe(out, observation::kind::limit_hit, "messages_per_session");
            close(out);
            return verdict::ok;
        }
        bool utf8 = false;
        for (std::size_t i = 3; i < args.size(); ++i)
            if (syntax::iequals(args[i].text, "SMTPUTF8")) utf8 = true;
        auto addr = syntax::extract_address(args[2], true, utf8);
        if (!addr.ok) {
            reply(out, p->bad_sender);
            return verdict::error;
        }
        std::uint64_t declared = 0;
        bool have_ret = false, have_envid = false;
        for (std::size_t i = 3; i < args.size(); ++i) {
            std::string_view a = args[i].text;
            auto prefix = [&](std::string_view pre) { return a.size() >= pre.size() && syntax::iequals(a.substr(0, pre.size()), pre); };
            if (syntax::iequals(a, "BODY=8BITMIME") || syntax::iequals(a, "BODY=7BIT") || syntax::iequals(a, "SMTPUTF8")) {
                continue;
            } else if (prefix("SIZE=")) {
                std::string_view n = a.substr(5);
                if (!syntax::all_digits(n)) {
                    reply(out, p->bad_size_syntax);
                    return verdict::error;
                }
                auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), declared);
                (void)ptr;
                if (ec != std::errc() || declared > static_cast<std::uint64_t>(INT64_MAX)) {
                    reply(out, p->size_too_big_fs);
                    return verdict::error;
                }
            } else if (prefix("AUTH=")) {
                if (!auth_enabled()) {
                    reply(out, p->auth_param_disabled);
                    return verdict::error;
                }
            } else if (prefix("RET=")) {
                std::string_view v = a.substr(4);
                if (have_ret || !(syntax::iequals(v, "FULL") || syntax::iequals(v, "HDRS"))) {
                    reply(out, p->bad_ret);
                    return verdict::error;
                }
                have_ret = true;
            } else if (prefix("ENVID=")) {
                auto v = syntax::xtext_decode(a.substr(6));
                if (have_envid || !v || v->empty()) {
                    reply(out, p->bad_envid);
                    return verdict::error;
                }
                have_envid = true;
            } else {
                reply(out, persona::fill(p->unsupported_option, {a}));
                return verdict::error;
            }
        }
        if (declared > bounds().message_size) {
            reply(out, p->size_exceeded);
            return verdict::error;
        }
        if (auto refused = consult(stage::mail, addr.address, out)) return *refused;
        in_mail = true;
        smtputf8 = utf8;
        envl.mail_from = addr.address;
        envl.mail_parameters = join_words(args, 3, args.size());
        envl.recipients.clear();
        observe(out, observation::kind::mail_from, envl.mail_from);
        reply(out, p->mail_ok);
        return verdict::ok;
    }

    // ---- RCPT ----
    bool is_local_domain(std::string_view domain) const {
        if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
        if (syntax::iequals(domain, host()) || syntax::iequals(domain, "localhost")) return true;
        auto dot = host().find('.');
        if (dot != std::string::npos && syntax::iequals(domain, "localhost." + host().substr(dot + 1))) return true;
        if (!facts.local_ip.empty() && syntax::iequals(domain, "[" + facts.local_ip + "]")) return true;
        return false;
    }
    bool known_local_user(std::string_view local) const {
        const auto& users = config->local_users.empty() ? p->default_local_users : config->local_users;
        for (const auto& u : users)
            if (syntax::iequals(u, local)) return true;
        return false;
    }
    // true when the address resolves to a local domain and nobody there has that name. Postfix
    // resolve_addr() on the internal (unquoted) form: strip a local @domain and look again, so an
    // '@' left in the local part makes it remote again (<a@remote@local>); with no domain left,
    // swap_bangpath turns "site!user" into "user@site", then allow_percent_hack the rightmost
    // '%' into '@'.
    bool unknown_local_recipient(std::string address) const {
        for (int round = 0; round < 16; ++round) {
            if (std::size_t at = address.rfind('@'); at != std::string::npos) {
                if (!is_local_domain(std::string_view(address).substr(at + 1))) return false;
                address.resize(at);
            } else if (std::size_t bang = address.find('!'); bang != std::string::npos) {
                address = address.substr(bang + 1) + "@" + address.substr(0, bang);
            } else if (std::size_t pct = address.rfind('%'); pct != std::string::npos) {
                address[pct] = '@';
            } else {
                return !known_local_user(address);
            }
        }
        return false;
    }
    // Postfix smtpd_check_rcpt(): nullopt when accepted, else the reply.
    std::optional<std::string> check_recipient(const std::string& raw) const {
        const std::string address = syntax::internalize(raw);  // what Postfix resolves and quotes
        if (syntax::iequals(address, "postmaster")) return std::nullopt;
        if (profile.relay_requires_auth && !authenticated) return persona::fill(p->access_denied, {address});
        if (profile.reject_unlisted_recipient && unknown_local_recipient(address))
            return persona::fill(p->user_unknown, {address});
        return std::nullopt;
    }

    verdict cmd_rcpt(const token_list& args, output& out) {
        if (!in_mail) {
            reply(out, p->need_mail);
            return verdict::error;
        }
        if (args.size() < 3 || !syntax::iequals(args[1].text, "to:")) {
            reply(out, p->rcpt_syntax);
            return verdict::error;
        }
        auto addr = syntax::extract_address(args[2], false, smtputf8);
        if (!addr.ok) {
            reply(out, p->bad_recipient);
            return verdict::error;
        }
        bool have_notify = false, have_orcpt = false;
        for (std::size_t i = 3; i < args.size(); ++i) {
            std::string_view a = args[i].text;
            auto prefix = [&](std::string_view pre) { return a.size() >= pre.size() && syntax::iequals(a.substr(0, pre.size()), pre); };
            if (prefix("NOTIFY=")) {
                std::string_view v = a.substr(7);
                bool ok = !have_notify && !v.empty();
                bool never = false, other = false;
                while (ok && !v.empty()) {
                    std::size_t comma = v.find(',');
                    std::string_view item = v.substr(0, comma);
                    if (syntax::iequals(item, "NEVER")) never = true;
                    else if (syntax::iequals(item, "SUCCESS") || syntax::iequals(item, "FAILURE") || syntax::iequals(item, "DELAY")) other = true;
                    else ok = false;
                    if (comma == std::string_view::npos) break;
                    v.remove_prefix(comma + 1);
                    if (v.empty()) ok = false;
                }
                if (!ok || (never && other)) {
                    reply(out, p->bad_notify);
                    return verdict::error;
                }
                have_notify = true;
            } else if (prefix("ORCPT=")) {
                std::string_view v = a.substr(6);
                std::size_t semi = v.find(';');
                bool ok = !have_orcpt && semi != std::string_view::npos && semi > 0;
                if (ok) {
                    auto decoded = syntax::xtext_decode(v.substr(semi + 1));
                    ok = decoded && !decoded->empty();
                }
                if (!ok) {
                    reply(out, p->bad_orcpt);
                    return verdict::error;
                }
                have_orcpt = true;
            } else {
                reply(out, persona::fill(p->unsupported_option, {a}));
                return verdict::error;
            }
        }
        if (envl.recipients.size() >= bounds().recipients_per_message) {
            reply(out, p->too_many_recipients);
            observe(out, observation::kind::limit_hit, "recipients_per_message");
            return overshoot++ < bounds().recipient_overshoot ? verdict::ok : verdict::error;
        }
        if (auto err = check_recipient(addr.address)) {
            reply(out, *err);
            return verdict::error;
        }
        if (auto refused = consult(stage::rcpt, addr.address, out)) return *refused;
        envl.recipients.push_back({addr.address, join_words(args, 3, args.size())});
        observe(out, observation::kind::rcpt_to, addr.address);
        reply(out, p->rcpt_ok);
        return verdict::ok;
    }

    // ---- DATA ----
    verdict cmd_data(const token_list& args, output& out) {
        if (bdat_active || bdat_error) {
            reply(out, p->data_after_bdat);
            return verdict::error;
        }
        if (envl.recipients.empty()) {
            reply(out, in_mail ? p->no_valid_recipients : p->need_rcpt);
            return verdict::error;
        }
        if (args.size() != 1) {
            reply(out, p->data_syntax);
            return verdict::error;
        }
        envl.via_bdat = false;
        bdat_active = false;
        open_message(out);
        bol = true;
        dot_line = false;
        dot_crs = 0;
        reply(out, p->data_go);
        ph = phase::data;
        return verdict::ok;
    }

    void store(std::string_view bytes_in) {
        if (bytes_in.empty() || too_big) return;
        message_bytes += bytes_in.size();
        if (message_bytes > bounds().message_size) {
            too_big = true;
            discard_message();
            return;
        }
        last_stored = bytes_in.back();
        if (sink_open) sink.append(bytes_in);
    }

    std::size_t read_data(std::string_view in, std::size_t pos, output& out) {
        std::size_t seg = pos;
        while (pos < in.size()) {
            if (dot_line) {
                char c = in[pos];
                if (c == '\r') {
                    ++dot_crs;
                    seg = ++pos;
                    continue;
                }
                if (c == '\n') {
                    end_of_data(out);
                    return pos + 1;
                }
                // A stuffed line: drop the leading dot, keep the rest.
                static constexpr std::string_view crs = "\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r";
                while (dot_crs > 0) {
                    std::size_t n = std::min(dot_crs, crs.size());
                    store(crs.substr(0, n));
                    dot_crs -= n;
                }
                dot_line = false;
                bol = false;
                seg = pos;
                continue;
            }
            if (bol && in[pos] == '.') {
                store(in.substr(seg, pos - seg));
                dot_line = true;
                dot_crs = 0;
                seg = ++pos;
                continue;
            }
            const void* nl = std::memchr(in.data() + pos, '\n', in.size() - pos);
            if (nl == nullptr) {
                pos = in.size();
                bol = false;
            } else {
                pos = static_cast<std::size_t>(static_cast<const char*>(nl) - in.data()) + 1;
                bol = true;
            }
        }
        store(in.substr(seg, pos - seg));
        return pos;
    }

    void end_of_data(output& out) {
        dot_line = false;
        if (too_big) {
            observe(out, observation::kind::limit_hit, "message_size");
            ph = phase::command;
            mail_reset();
            reply(out, p->size_exceeded);
            count_error(out);
            return;
        }
        ph = phase::awaiting_commit;
        pending_request = request::commit_message;
    }

    // ---- BDAT (RFC 3030) ----
    verdict cmd_bdat(const token_list& args, output& out) {
        std::uint64_t size = 0;
        bool ok = args.size() >= 2 && args.size() <= 3 && syntax::all_digits(args[1].text) &&
                  (args.size() == 2 || syntax::iequals(args[2].text, "LAST"));
        if (ok) {
            const std::string& n = args[1].text;
            auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), size);
            (void)ptr;
            ok = ec == std::errc() && size <= static_cast<std::uint64_t>(INT64_MAX);
        }
        if (!ok) {
            reply(out, p->bdat_syntax);
            close(out);
            return verdict::error;
        }
        chunk_last = args.size() == 3;
        chunk_size = size;
        chunk_left = size;
        if (bdat_error) {
            mode = chunk_mode::skip_after_error;
        } else if (envl.recipients.empty()) {
            mode = in_mail ? chunk_mode::skip_no_recipients : chunk_mode::skip_need_rcpt;
        } else {
            mode = chunk_mode::store;
            if (!bdat_active) {
                bdat_active = true;
                bdat_total = 0;
                envl.via_bdat = true;
                open_message(out);
            }
        }
        ph = phase::bdat;
        if (chunk_left == 0) finish_chunk(out);
        return verdict::pending;
    }

    std::size_t read_chunk(std::string_view in, std::size_t pos, output& out) {
        std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_left, in.size() - pos));
        if (mode == chunk_mode::store) store(in.substr(pos, take));
        chunk_left -= take;
        pos += take;
        if (chunk_left == 0) finish_chunk(out);
        return pos;
    }

    void finish_chunk(output& out) {
        ph = phase::command;
        switch (mode) {
        case chunk_mode::skip_after_error:
            reply(out, persona::fill(p->bdat_discarded, {std::to_string(chunk_size)}));
            end_failed_chunk();
            count_error(out);
            return;
        case chunk_mode::skip_need_rcpt:
        case chunk_mode::skip_no_recipients:
            reply(out, mode == chunk_mode::skip_need_rcpt ? p->need_rcpt : p->no_valid_recipients);
            end_failed_chunk();
            count_error(out);
            return;
        case chunk_mode::store: break;
        }
        bdat_total += chunk_size;
        if (too_big) {
            observe(out, observation::kind::limit_hit, "message_size");
            end_failed_chunk();
            mail_reset();
            reply(out, p->size_exceeded);
            count_error(out);
            return;
        }
        if (chunk_last) {
            // Postfix ends a message whose last line lacks its line end with CRLF (and counts it).
            if (bdat_total > 0 && last_stored != '\n') {
                store("\r\n");
                bdat_total += 2;
            }
            ph = phase::awaiting_commit;
            pending_request = request::commit_message;
            return;
        }
        reply(out, persona::fill(p->bdat_ok, {std::to_string(bdat_total)}));
    }

    // A chunk was refused: later chunks are discarded up to LAST, which ends the transaction.
    void end_failed_chunk() {
        if (chunk_last) {
            mail_reset();
            bdat_error = false;
        } else {
            bdat_error = true;
        }
    }

    // ---- RSET NOOP QUIT VRFY ETRN XCLIENT ----
    verdict cmd_rset(const token_list& args, output& out) {
        if (args.size() != 1) {
            reply(out, p->rset_syntax);
            return verdict::error;
        }
        mail_reset();
        bdat_error = false;
        reply(out, p->ok);
        return verdict::ok;
    }
    verdict cmd_noop(const token_list&, output& out) {
        reply(out, p->ok);
        return verdict::ok;
    }
    verdict cmd_quit(const token_list&, output& out) {
        reply(out, p->bye);
        close(out);
        return verdict::ok;
    }
    verdict cmd_vrfy(const token_list& args, output& out) {
        if (args.size() < 2) {
            reply(out, p->vrfy_syntax);
            return verdict::error;
        }
        std::size_t n = args.size();
        bool utf8 = false;
        if (n > 2 && syntax::iequals(args[n - 1].text, "SMTPUTF8")) {
            --n;
            utf8 = true;
        }
        token arg;
        arg.text = join_words(args, 1, n);
        for (std::size_t i = 1; i < n; ++i) arg.error = arg.error || args[i].error;
        syntax::address_result addr;
        if (n == 2 && arg.error && args[1].address) {
            addr = {true, arg.text};  // "VRFY <root": Postfix checks the recipient "<root"
        } else {
            addr = syntax::extract_address(arg, false, utf8);
        }
        if (!addr.ok) {
            reply(out, p->bad_recipient);
            return verdict::error;
        }
        if (auto err = check_recipient(addr.address)) {
            reply(out, *err);
            return verdict::error;
        }
        reply(out, persona::fill(p->vrfy_ok, {arg.text}));
        return verdict::ok;
    }
    verdict cmd_etrn(const token_list& args, output& out) {
        if (in_mail) {
            reply(out, p->etrn_in_mail);
            return verdict::error;
        }
        if (args.size() != 2) {
            reply(out, p->etrn_syntax);
            return verdict::error;
        }
        std::string_view domain = args[1].text;
        if (domain.front() == '@' || domain.front() == '#') domain.remove_prefix(1);
        if (!syntax::valid_hostname(domain, false) && !syntax::valid_address_literal(domain)) {
            reply(out, p->etrn_bad);
            return verdict::error;
        }
        reply(out, persona::fill(p->etrn_refused, {domain}));
        return verdict::error;
    }
    verdict cmd_xclient(const token_list&, output& out) {
        reply(out, p->xclient_denied);
        return verdict::error;
    }

    // ---- STARTTLS ----
    verdict cmd_starttls(const token_list& args, output& out) {
        if (args.size() != 1) {
            reply(out, p->starttls_syntax);
            return verdict::error;
        }
        if (tls_active) {
            reply(out, p->tls_already_active);
            return verdict::error;
        }
        if (!profile.offer_starttls) {
            reply(out, p->tls_not_available);
            return verdict::error;
        }
        reply(out, p->tls_ready);
        observe(out, observation::kind::tls_requested, "");
        ph = phase::awaiting_tls;
        pending_request = request::start_tls;
        return verdict::ok;
    }

    // ---- AUTH ----
    verdict cmd_auth(const token_list& args, output& out) {
        if (!auth_enabled()) {
            reply(out, p->auth_not_enabled);
            return verdict::error;
        }
        if (in_mail) {
            reply(out, p->auth_in_mail);
            return verdict::error;
        }
        if (authenticated) {
            reply(out, p->auth_already);
            return verdict::error;
        }
        if (args.size() < 2 || args.size() > 3) {
            reply(out, p->auth_syntax);
            return verdict::error;
        }
        pending() = credential{};
        for (char c : args[1].text) pending().mechanism.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c);
        std::optional<std::string_view> initial;
        if (args.size() == 3) {
            initial = args[2].text;
            pending().raw = args[2].text;
        }
        bool known = std::find(p->auth_mechanisms.begin(), p->auth_mechanisms.end(), pending().mechanism) !=
                     p->auth_mechanisms.end();
        if (!known) return auth_fail(out, p->auth_no_mechanism);
        std::optional<std::string> decoded;
        if (initial) {
            decoded.emplace();
            if (auto bad = decode_failure(*initial, *decoded)) return auth_fail(out, *bad);
        }
        if (pending().mechanism == "PLAIN") {
            if (decoded) return auth_plain(*decoded, out);
            step = sasl_step::plain;
            reply(out, p->plain_prompt);
        } else if (pending().mechanism == "LOGIN") {
            if (decoded) {
                pending().username = *decoded;
                step = sasl_step::login_password;
                reply(out, p->login_password_prompt);
            } else {
                step = sasl_step::login_user;
                reply(out, p->login_user_prompt);
            }
        } else {  // CRAM-MD5: server first, an initial response is a protocol error
            if (decoded) return auth_fail(out, p->auth_bad_protocol);
            auto now = std::chrono::duration_cast<std::chrono::seconds>(env.now().time_since_epoch()).count();
            pending().challenge = p->cram_challenge(env.random(), static_cast<std::uint64_t>(now), host());
            step = sasl_step::cram;
            reply(out, "334 " + syntax::base64_encode(pending().challenge));
        }
        ph = phase::sasl;
        return verdict::pending;
    }

    // Cyrus sasl_decode64(): nullptr when `text` decoded into `decoded`, else the failure reply.
    const std::string* decode_failure(std::string_view text, std::string& decoded) const {
        switch (syntax::sasl_decode64(text, decoded)) {
        case syntax::sasl_base64::ok: return nullptr;
        case syntax::sasl_base64::incomplete: return &p->auth_incomplete;
        case syntax::sasl_base64::bad_protocol: break;
        }
        return &p->auth_bad_protocol;
    }

    verdict auth_fail(output& out, const std::string& text) {
        pending().accepted = false;
        creds.push_back(pending());
        observe(out, observation::kind::auth, pending().mechanism + " " + pending().username);
        ++auth_failures;
        step = sasl_step::none;
        ph = phase::command;
        reply(out, text);
        return verdict::error;
    }

    verdict auth_plain(const std::string& decoded, output& out) {
        std::size_t first = decoded.find('\0');
        std::size_t second = first == std::string::npos ? std::string::npos : decoded.find('\0', first + 1);
        if (second == std::string::npos) return auth_fail(out, p->auth_bad_protocol);
        pending().authzid = decoded.substr(0, first);
        pending().username = decoded.substr(first + 1, second - first - 1);
        pending().password = decoded.substr(second + 1);
        return auth_finish(out);
    }

    bool policy_accepts() {
        const auth_policy& policy = config->auth;
        switch (policy.policy) {
        case auth_policy::mode::accept_all: return true;
        case auth_policy::mode::reject_all: return false;
        case auth_policy::mode::accept_after_failures: return auth_failures >= policy.failures_before_accept;
        case auth_policy::mode::accept_listed:
            for (const auto& [user, password] : policy.accepted_pairs) {
                if (user != pending().username) continue;
                if (pending().mechanism == "CRAM-MD5") {
                    if (syntax::lowercase(pending().password) == syntax::hmac_md5_hex(password, pending().challenge)) return true;
                } else if (password == pending().password) {
                    return true;
                }
            }
            return false;
        }
        return false;
    }

    verdict auth_finish(output& out) {
        if (!policy_accepts()) return auth_fail(out, p->auth_failed);
        if (policy != nullptr) {
            std::optional<credential> attempt = pending();
            attempt->accepted = true;
            stage_verdict decision = policy->decide(stage::auth, facts, envl, attempt, pending().username);
            tarpit = decision.delay;
            const bool refusal = !decision.reply.empty() && (decision.reply[0] == '4' || decision.reply[0] == '5');
            if (decision.what == stage_verdict::kind::disconnect || (decision.what == stage_verdict::kind::reply && refusal)) {
                const verdict v = auth_fail(out, decision.reply.empty() ? p->auth_failed : decision.reply);
                observe(out, observation::kind::policy, "auth");
                if (decision.what == stage_verdict::kind::disconnect) close(out);
                return v;
            }
        }
        pending().accepted = true;
        creds.push_back(pending());
        observe(out, observation::kind::auth, pending().mechanism + " " + pending().username);
        authenticated = true;
        envl.auth = pending();
        step = sasl_step::none;
        ph = phase::command;
        reply(out, p->auth_ok);
        return verdict::ok;
    }

    void sasl_line(std::string_view text, output& out) {
        if (text == "*") {
            if (auth_fail(out, p->auth_aborted) == verdict::error) count_error(out);
            return;
        }
        if (!pending().raw.empty()) pending().raw.push_back(' ');
        pending().raw.append(text);
        std::optional<std::string> decoded{std::in_place};
        verdict v = verdict::pending;
        if (auto bad = decode_failure(text, *decoded)) {
            v = auth_fail(out, *bad);
        } else {
            switch (step) {
            case sasl_step::plain: v = auth_plain(*decoded, out); break;
            case sasl_step::login_user:
                pending().username = *decoded;
                step = sasl_step::login_password;
                reply(out, p->login_password_prompt);
                break;
            case sasl_step::login_password:
                pending().password = *decoded;
                // Cyrus cannot look up an empty user name: a temporary failure, whatever the policy.
                v = pending().username.empty() ? auth_fail(out, p->auth_temp_failure) : auth_finish(out);
                break;
            case sasl_step::cram: {
                std::size_t sp = decoded->rfind(' ');
                if (sp == std::string::npos) {
                    v = auth_fail(out, p->auth_bad_protocol);
                } else {
                    pending().username = decoded->substr(0, sp);
                    pending().password = decoded->substr(sp + 1);
                    v = auth_finish(out);
                }
                break;
            }
            case sasl_step::none: ph = phase::command; break;
            }
        }
        if (v == verdict::error) count_error(out);
    }
};

const std::array<engine::state::command_spec, 15>& engine::state::command_table() {
    // Postfix smtpd_cmd_table order and flags.
    static const std::array<command_spec, 15> table{{
        {"HELO", flag_pre_tls | flag_junk, &state::cmd_helo},
        {"EHLO", flag_pre_tls | flag_junk, &state::cmd_ehlo},
        {"XCLIENT", flag_pre_tls, &state::cmd_xclient},
        {"XFORWARD", 0, &state::cmd_xclient},
        {"STARTTLS", flag_pre_tls, &state::cmd_starttls},
        {"AUTH", 0, &state::cmd_auth},
        {"MAIL", 0, &state::cmd_mail},
        {"RCPT", 0, &state::cmd_rcpt},
        {"DATA", 0, &state::cmd_data},
        {"BDAT", 0, &state::cmd_bdat},
        {"RSET", flag_junk, &state::cmd_rset},
        {"NOOP", flag_pre_tls | flag_junk, &state::cmd_noop},
        {"VRFY", flag_junk, &state::cmd_vrfy},
        {"ETRN", flag_junk, &state::cmd_etrn},
        {"QUIT", flag_pre_tls, &state::cmd_quit},
    }};
    return table;
}

// ---- engine ----

engine::engine(const engine_config& config, connection_facts facts, message_sink& sink, environment& env)
    : state_(std::make_unique<state>(config, std::move(facts), sink, env)) {}

engine::~engine() {
    if (state_) state_->discard_message();
}

std::string engine::greeting() { return persona::fill(state_->p->banner, {state_->host()}) + "\r\n"; }

void engine::feed(std::string_view input, output& out) { state_->feed(input, out); }

void engine::tls_started(const tls_facts& tls, output& out) {
    auto& s = *state_;
    s.tls_active = true;
    s.tls = std::make_unique<tls_facts>(tls);
    // Postfix forgets everything learned before the handshake (RFC 3207 section 4.2).
    s.mail_reset();
    s.bdat_error = false;
    s.envl.helo_name.clear();
    s.envl.helo_verb.clear();
    s.envl.auth.reset();
    s.authenticated = false;
    s.step = sasl_step::none;
    s.line.clear();
    s.skipping = false;
    s.truncated = false;
    if (s.ph == phase::awaiting_tls) s.ph = phase::command;
    out.next = request::none;
}

void engine::message_committed(std::string_view queue_id, output& out) {
    auto& s = *state_;
    if (s.ph != phase::awaiting_commit) return;
    s.ph = phase::command;
    if (s.envl.via_bdat)
        s.reply(out, persona::fill(s.p->bdat_queued, {std::to_string(s.bdat_total), queue_id}));
    else
        s.reply(out, persona::fill(s.p->queued, {queue_id}));
    ++s.messages;
    s.junk_count = 0;
    s.sink_open = false;  // the message now belongs to the store
    s.mail_reset();
    out.next = request::none;
}

void engine::message_committed(std::string_view queue_id, const stage_verdict& verdict, output& out) {
    auto& s = *state_;
    if (s.ph != phase::awaiting_commit) return;
    if (verdict.what == stage_verdict::kind::proceed || verdict.reply.empty()) {
        s.tarpit = verdict.delay;
        message_committed(queue_id, out);
        if (verdict.what == stage_verdict::kind::disconnect) {
            s.close(out);
            out.next = request::close;
        }
        return;
    }
    s.ph = phase::command;
    ++s.messages;
    s.junk_count = 0;
    s.sink_open = false;
    s.mail_reset();
    s.tarpit = verdict.delay;
    s.reply(out, verdict.reply);
    if (verdict.reply[0] == '4' || verdict.reply[0] == '5') s.count_error(out);
    out.next = request::none;
    if (verdict.what == stage_verdict::kind::disconnect) {
        s.close(out);
        out.next = request::close;
    }
}

void engine::set_policy(stage_policy* policy) { state_->policy = policy; }

void engine::message_failed(output& out) {
    auto& s = *state_;
    if (s.ph != phase::awaiting_commit) return;
    s.ph = phase::command;
    s.mail_reset();
    s.reply(out, s.p->queue_write_error);
    s.count_error(out);
    out.next = request::none;
}

std::string engine::timeout_reply() const { return persona::fill(state_->p->timeout, {state_->host()}) + "\r\n"; }

std::string engine::busy_reply() const {
    return persona::fill(state_->p->busy, {state_->host(), state_->facts.peer_ip}) + "\r\n";
}

const envelope& engine::current_envelope() const { return state_->envl; }
const std::vector<credential>& engine::credentials() const { return state_->creds; }
std::optional<tls_facts> engine::tls() const {
    if (!state_->tls) return std::nullopt;
    return *state_->tls;
}
std::uint64_t engine::bytes_received() const { return state_->bytes; }
std::size_t engine::messages_accepted() const { return state_->messages; }
unsigned engine::errors() const { return state_->error_count; }
bool engine::in_message() const {
    const auto& s = *state_;
    return s.ph == phase::data || s.ph == phase::bdat || s.ph == phase::awaiting_commit || s.bdat_active;
}

}  // namespace relaybait::smtp
