// The rule engine: rules.toml -> an ordered set of rules, each with a hook, a condition in a
// small safe expression language (docs/rules.md) and actions. Pure: no I/O except reading the
// rules file in rule_set::load / rule_store::reload. The first matching rule decides.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace relaybait::mime {
struct parsed_message;
}

namespace relaybait::rules {

// Values that stand for the honeypot itself ($self.ipv4, $self.ipv6, $self.ip, $self.hostname,
// $self.ports). Resolved when the rules are compiled.
struct self_identity {
    std::vector<std::string> ipv4;
    std::vector<std::string> ipv6;
    std::string hostname;
    std::vector<std::uint16_t> ports;
};

// Where in the SMTP dialogue a rule is evaluated, in dialogue order.
enum class hook_point { connect, ehlo, auth, mail, rcpt, data };
std::string_view to_string(hook_point hook);
std::optional<hook_point> hook_from_string(std::string_view name);

// Everything a condition can look at. Fields the hook cannot know yet are simply left empty;
// comparisons on fields not available at `hook` are false.
struct context {
    hook_point hook = hook_point::data;
    // session
    std::string client_ip;    // "203.0.113.7" or "2001:db8::1" (v4-mapped v6 is treated as v4)
    std::string listener;     // "smtp", "smtps", "submission"
    bool tls = false;
    std::string tls_version;  // "TLSv1.3" or empty
    std::string helo;         // EHLO/HELO argument (ehlo and later)
    std::string auth_user;    // empty when the client did not authenticate (auth and later)
    std::string auth_password;
    // envelope
    std::string mail_from;             // reverse path without <> (mail and later)
    std::vector<std::string> rcpt_to;  // accepted recipients so far; at rcpt the last one is the one being checked
    // message (data only)
    const mime::parsed_message* message = nullptr;
    std::uint64_t size = 0;  // raw message bytes
};

struct smtp_reply {
    int code = 250;     // 200..599
    std::string text;   // one line, printable ASCII, e.g. "5.7.1 Relay access denied"
};

struct actions {
    // Folder to store into, as written ("Probes", ".Probes", "INBOX"): what it means is
    // store::maildir_folder_for (checked at load). none = leave the message where it goes.
    std::optional<std::string> folder;
    std::vector<std::string> tags;
    bool drop = false;   // do not keep the message, only its metadata
    bool relay = false;  // ask the relay layer to deliver it (hook data only; caps still apply)
    std::optional<smtp_reply> reply;          // reply to send instead of the normal one
    std::chrono::milliseconds tarpit{0};      // delay before the reply
};

struct expression;  // compiled condition (src/rules/expr.hpp)

struct rule {
    std::string name;
    std::string kind;  // probe, spam, phishing, malware, scan or any label
    std::string description;
    int priority = 100;  // lower first
    bool enabled = true;
    hook_point hook = hook_point::data;
    std::string when;  // condition source text
    rules::actions actions;
    std::size_t line = 0;        // of the [[rule]] header
    std::size_t file_index = 0;  // position in the file (ties of priority keep file order)
    std::shared_ptr<const expression> condition;

    bool matches(const context& ctx) const;         // enabled and the condition holds
    bool condition_holds(const context& ctx) const; // the condition alone (dry runs of disabled rules)
};

struct diagnostic {
    std::string file;
    std::size_t line = 0;
    std::size_t column = 0;
    std::string message;
    std::string to_string() const;  // "FILE:LINE:COL: message"
};

class rules_error : public std::runtime_error {
public:
    rules_error(std::string file, std::size_t line, std::size_t column, std::string message);
    const std::string& file() const noexcept { return file_; }
    std::size_t line() const noexcept { return line_; }
    std::size_t column() const noexcept { return column_; }
    const std::string& message() const noexcept { return message_; }

private:
    std::string file_;
    std::size_t line_;
    std::size_t column_;
    std::string message_;
};

// The largest rules file load() reads.
inline constexpr std::size_t max_rules_file_bytes = 8 * 1024 * 1024;

class rule_set {
public:
    rule_set() = default;
    // Throws rules_error naming file:line:column for any problem (I/O, TOML, rule, expression).
    // Only a regular file (or a symbolic link to one) is read: a FIFO, a device or a directory is
    // refused without blocking, and so is a file larger than max_rules_file_bytes (at most that
    // many bytes plus one are ever read, even from a file that grows meanwhile).
    static rule_set load(const std::filesystem::path& path, const self_identity& self);
    static rule_set parse(std::string_view text, const std::string& origin, const self_identity& self);

    // The rule that decides for this context: among the enabled rules of ctx.hook, by priority
    // then file order, the first whose condition is true. nullptr when none matches.
    const rule* first_match(const context& ctx) const;
    // The rule of that name (enabled or not), nullptr when there is none.
    const rule* find(std::string_view name) const;

    const std::vector<rule>& rules() const noexcept { return rules_; }  // file order
    // Non-fatal findings (a rule that uses a field its hook cannot see, ...), for `rules check`.
    const std::vector<diagnostic>& warnings() const noexcept { return warnings_; }
    const std::string& origin() const noexcept { return origin_; }

private:
    std::string origin_;
    std::vector<rule> rules_;
    std::vector<std::size_t> order_[6];  // per hook: indexes into rules_, in evaluation order
    std::vector<diagnostic> warnings_;

    void index();
};

// The default rules (rules.example.toml), embedded in the binary; origin name for errors.
std::string_view default_rules_text();
inline constexpr std::string_view default_rules_origin = "<built-in rules>";

// The live rules of a running server: readers take a snapshot, reload() swaps atomically and
// keeps the last good set when the file is bad.
class rule_store {
public:
    using loader = std::function<rule_set(const std::filesystem::path&, const self_identity&)>;
    // `load` reads a non-empty path (rule_set::load unless a test replaces it).
    rule_store(std::filesystem::path path, self_identity self, loader load = &rule_set::load);

    std::shared_ptr<const rule_set> current() const;
    // Re-reads the file (an empty path: the embedded default rules). On error the previous set
    // stays active and the error is returned. Never throws for a bad file: any other exception
    // while reading or compiling (std::bad_alloc, ...) is returned as a rules_error too, since a
    // reload runs on a background thread where an escaping exception ends the process.
    std::optional<rules_error> reload();
    std::optional<rules_error> reload(const self_identity& self);  // also replaces $self values
    // Installs an already-validated set (e.g. the embedded defaults when no file exists).
    void install(rule_set set);
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
    self_identity self_;
    loader load_;
    mutable std::mutex mutex_;
    std::shared_ptr<const rule_set> current_;
};

}  // namespace relaybait::rules
