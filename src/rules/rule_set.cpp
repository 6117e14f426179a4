// rules.toml -> rule_set. Every key is known and typed; every error names file:line:column.
#include <toml++/toml.h>

#include "config/toml_type_name.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "rules/expr.hpp"
#include "rules/rules.hpp"
#include "store/maildir.hpp"  // maildir_folder_for: inline, no link to relaybait_store

namespace relaybait::rules {

std::string_view to_string(hook_point hook) {
    switch (hook) {
        case hook_point::connect: return "connect";
        case hook_point::ehlo: return "ehlo";
        case hook_point::auth: return "auth";
        case hook_point::mail: return "mail";
        case hook_point::rcpt: return "rcpt";
        case hook_point::data: return "data";
    }
    return "?";
}

std::optional<hook_point> hook_from_string(std::string_view name) {
    for (int i = 0; i < 6; ++i) {
        const auto hook = static_cast<hook_point>(i);
        if (to_string(hook) == name) return hook;
    }
    return std::nullopt;
}

namespace {

std::string format(const std::string& file, std::size_t line, std::size_t column, const std::string& message) {
    std::string text = file;
    if (line != 0) {
        text += ':' + std::to_string(line);
        if (column != 0) text += ':' + std::to_string(column);
    }
    return text + ": " + message;
}

}  // namespace

std::string diagnostic::to_string() const { return format(file, line, column, message); }

rules_error::rules_error(std::string file, std::size_t line, std::size_t column, std::string message)
    : std::runtime_error(format(file, line, column, message)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      message_(std::move(message)) {}

bool rule::matches(const context& ctx) const { return enabled && condition_holds(ctx); }
bool rule::condition_holds(const context& ctx) const { return condition && evaluate(*condition, ctx); }

namespace {

using config::toml_type_name;

// Byte offset of a toml++ (line, column) position; columns count characters.
std::size_t offset_of(std::string_view text, std::size_t line, std::size_t column) {
    std::size_t i = 0;
    for (std::size_t l = 1; l < line && i < text.size(); ++i)
        if (text[i] == '\n') ++l;
    for (std::size_t c = 1; c < column && i < text.size(); ++i) {
        if (text[i] == '\n') break;
        // step over continuation bytes of one character
        while (i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80) ++i;
        ++c;
    }
    return i;
}

// For a TOML string value starting at `start` (its opening quote) in `raw`, the raw byte offset
// of each byte of the decoded string (plus one for its end). Empty if it cannot be followed.
std::vector<std::size_t> map_string(std::string_view raw, std::size_t start, std::size_t decoded_size) {
    std::vector<std::size_t> map;
    if (start >= raw.size()) return map;
    const char quote = raw[start];
    if (quote != '"' && quote != '\'') return map;
    const bool multi = raw.substr(start, 3) == std::string_view(quote == '"' ? "\"\"\"" : "'''");
    std::size_t i = start + (multi ? 3 : 1);
    if (multi) {
        if (raw.substr(i, 2) == "\r\n") i += 2;
        else if (i < raw.size() && raw[i] == '\n') ++i;
    }
    const bool basic = quote == '"';
    while (i < raw.size() && map.size() < decoded_size) {
        const char c = raw[i];
        if (basic && c == '\\' && i + 1 < raw.size()) {
            const char e = raw[i + 1];
            if (multi && (e == ' ' || e == '\t' || e == '\r' || e == '\n')) {  // line-ending backslash
                std::size_t j = i + 1;
                while (j < raw.size() && (raw[j] == ' ' || raw[j] == '\t')) ++j;
                if (j < raw.size() && (raw[j] == '\n' || raw[j] == '\r')) {
                    while (j < raw.size() && (raw[j] == ' ' || raw[j] == '\t' || raw[j] == '\r' || raw[j] == '\n')) ++j;
                    i = j;
                    continue;
                }
            }
            std::size_t bytes = 1;
            std::size_t length = 2;
            if (e == 'u' || e == 'U') {
                length = e == 'u' ? 6 : 10;
                unsigned long cp = 0;
                try {
                    cp = std::stoul(std::string(raw.substr(i + 2, length - 2)), nullptr, 16);
                } catch (...) {
                    return {};
                }
                bytes = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            } else if (e == 'x') {
                length = 4;
                bytes = 1;
            }
            for (std::size_t k = 0; k < bytes; ++k) map.push_back(i);
            i += length;
            continue;
        }
        if (multi && c == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') {
            map.push_back(i);
            i += 2;
            continue;
        }
        map.push_back(i);
        ++i;
    }
    if (map.size() != decoded_size) return {};
    map.push_back(i);
    return map;
}

class loader {
public:
    loader(std::string_view text, const std::string& origin, const self_identity& self)
        : text_(text), origin_(origin), self_(self) {}

    [[noreturn]] void fail(const toml::source_region& where, const std::string& message) const {
        throw rules_error(origin_, where.begin.line, where.begin.column, message);
    }

    template <class T>
    const auto& require(const toml::node& node, const std::string& key, std::string_view expected) const {
        const auto* value = node.as<T>();
        if (value == nullptr)
            fail(node.source(), key + ": expected " + std::string(expected) + ", got " + std::string(toml_type_name(node.type())));
        return *value;
    }

    void check_keys(const toml::table& table, const std::string& where, std::initializer_list<std::string_view> known) const {
        for (auto&& [key, value] : table) {
            if (std::find(known.begin(), known.end(), key.str()) == known.end()) {
                std::string list;
                for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
                fail(key.source(), where + "unknown key '" + std::string(key.str()) + "' (known: " + list + ")");
            }
        }
    }

    std::vector<rule> load(std::vector<diagnostic>& warnings) {
        toml::table document;
        try {
            document = toml::parse(text_, origin_);
        } catch (const toml::parse_error& error) {
            throw rules_error(origin_, error.source().begin.line, error.source().begin.column, std::string(error.description()));
        }
        check_keys(document, "", {"rule"});
        std::vector<rule> rules;
        const toml::node* list = document.get("rule");
        if (list == nullptr) return rules;
        const auto* array = list->as_array();
        if (array == nullptr) fail(list->source(), "rule: expected [[rule]] tables, got " + std::string(toml_type_name(list->type())));
        if (array->size() > 10000) fail(list->source(), "more than 10000 rules");
        std::set<std::string> names;
        for (const toml::node& element : *array) {
            const auto* table = element.as_table();
            if (table == nullptr) fail(element.source(), "rule: expected a table, got " + std::string(toml_type_name(element.type())));
            rule r = read_rule(*table, rules.size(), warnings);
            if (!names.insert(r.name).second)
                fail(table->get("name")->source(), "duplicate rule name \"" + r.name + "\"");
            rules.push_back(std::move(r));
        }
        return rules;
    }

private:
    static bool valid_label(std::string_view text, std::size_t max, std::string_view extra) {
        if (text.empty() || text.size() > max) return false;
        for (char c : text)
            if (!std::isalnum(static_cast<unsigned char>(c)) && extra.find(c) == std::string_view::npos) return false;
        return true;
    }

    rule read_rule(const toml::table& table, std::size_t index, std::vector<diagnostic>& warnings) {
        rule r;
        r.file_index = index;
        r.line = table.source().begin.line;
        const toml::node* name = table.get("name");
        if (name == nullptr) fail(table.source(), "rule: missing key 'name'");
        r.name = require<std::string>(*name, "name", "a string").get();
        if (r.name.empty() || r.name.size() > 128 || r.name.find_first_of("\r\n\t") != std::string::npos)
            fail(name->source(), "name: must be 1 to 128 characters on one line");
        const std::string where = "rule \"" + r.name + "\": ";
        check_keys(table, where, {"name", "kind", "description", "priority", "enabled", "hook", "when", "actions"});

        if (const toml::node* kind = table.get("kind")) {
            r.kind = require<std::string>(*kind, where + "kind", "a string").get();
            if (!valid_label(r.kind, 32, "_-."))
                fail(kind->source(), where + "kind: must be a label of 1 to 32 letters, digits, '_', '-' or '.'");
        } else {
            fail(table.source(), where + "missing key 'kind' (probe, spam, phishing, malware, scan or any label)");
        }
        if (const toml::node* description = table.get("description"))
            r.description = require<std::string>(*description, where + "description", "a string").get();
        if (const toml::node* priority = table.get("priority")) {
            const std::int64_t value = require<std::int64_t>(*priority, where + "priority", "an integer").get();
            if (value < -1000000 || value > 1000000) fail(priority->source(), where + "priority: must be from -1000000 to 1000000");
            r.priority = static_cast<int>(value);
        }
        if (const toml::node* enabled = table.get("enabled")) r.enabled = require<bool>(*enabled, where + "enabled", "a boolean").get();
        if (const toml::node* hook = table.get("hook")) {
            const std::string& value = require<std::string>(*hook, where + "hook", "a string").get();
            const auto parsed = hook_from_string(value);
            if (!parsed) fail(hook->source(), where + "hook: unknown hook \"" + value + "\" (connect, ehlo, auth, mail, rcpt, data)");
            r.hook = *parsed;
        }
        const toml::node* when = table.get("when");
        if (when == nullptr) fail(table.source(), where + "missing key 'when' (the condition; use \"true\" to always match)");
        r.when = require<std::string>(*when, where + "when", "a string").get();
        std::vector<std::size_t> map;
        try {
            r.condition = compile(r.when, self_);
        } catch (const expression_error& error) {
            const auto [line, column] = locate(*when, r.when, error.offset(), map);
            throw rules_error(origin_, line, column, where + "when: " + error.what());
        }
        for (const auto& use : r.condition->uses) {
            if (static_cast<int>(use.from) > static_cast<int>(r.hook)) {
                const auto [line, column] = locate(*when, r.when, use.offset, map);
                warnings.push_back({origin_, line, column,
                                    where + "'" + use.name + "' is only known from hook " + std::string(to_string(use.from)) +
                                        " on, but the rule runs at hook " + std::string(to_string(r.hook)) +
                                        ": that comparison is always false"});
            }
            if (use.empty_self) {
                const auto [line, column] = locate(*when, r.when, use.offset, map);
                warnings.push_back({origin_, line, column, where + "'" + use.name + "' has no value configured: comparisons with it are false"});
            }
        }
        if (const toml::node* actions = table.get("actions")) {
            const auto& t = require<toml::table>(*actions, where + "actions", "a table");
            read_actions(t, r, where);
        }
        return r;
    }

    void read_actions(const toml::table& table, rule& r, const std::string& where) {
        const std::string prefix = where + "actions.";
        check_keys(table, prefix, {"folder", "tags", "drop", "relay", "reply", "tarpit_ms"});
        actions& a = r.actions;
        if (const toml::node* folder = table.get("folder")) {
            const std::string& value = require<std::string>(*folder, prefix + "folder", "a string").get();
            if (!store::maildir_folder_for(value))  // the store's own rule: a rule loads only if it can be applied
                fail(folder->source(), prefix + "folder: INBOX or a Maildir++ folder name of letters, digits, '_', '-' (sub-folders separated by '.')");
            a.folder = value;
        }
        if (const toml::node* tags = table.get("tags")) {
            const auto& list = require<toml::array>(*tags, prefix + "tags", "an array of strings");
            if (list.size() > 32) fail(tags->source(), prefix + "tags: at most 32 tags");
            for (const toml::node& tag : list) {
                const std::string& value = require<std::string>(tag, prefix + "tags", "a string").get();
                if (!valid_label(value, 64, "_-.:")) fail(tag.source(), prefix + "tags: a tag is 1 to 64 letters, digits, '_', '-', '.', ':'");
                a.tags.push_back(value);
            }
        }
        if (const toml::node* drop = table.get("drop")) a.drop = require<bool>(*drop, prefix + "drop", "a boolean").get();
        if (const toml::node* relay = table.get("relay")) {
            a.relay = require<bool>(*relay, prefix + "relay", "a boolean").get();
            if (a.relay && r.hook != hook_point::data)
                fail(relay->source(), prefix + "relay: only allowed in rules at hook data (this rule runs at hook " +
                                          std::string(to_string(r.hook)) + ")");
            if (a.relay && a.drop) fail(relay->source(), prefix + "relay: a dropped message cannot be relayed");
        }
        if (a.drop && a.folder) fail(table.get("drop")->source(), prefix + "drop: a dropped message is not stored in a folder");
        if (const toml::node* reply = table.get("reply")) {
            const auto& t = require<toml::table>(*reply, prefix + "reply", "a table { code = 550, text = \"...\" }");
            check_keys(t, prefix + "reply.", {"code", "text"});
            smtp_reply value;
            const toml::node* code = t.get("code");
            if (code == nullptr) fail(reply->source(), prefix + "reply: missing key 'code'");
            const std::int64_t number = require<std::int64_t>(*code, prefix + "reply.code", "an integer").get();
            if (number < 200 || number > 599) fail(code->source(), prefix + "reply.code: must be an SMTP code from 200 to 599");
            value.code = static_cast<int>(number);
            if (const toml::node* text = t.get("text")) {
                value.text = require<std::string>(*text, prefix + "reply.text", "a string").get();
                if (value.text.size() > 400) fail(text->source(), prefix + "reply.text: at most 400 characters");
                for (char c : value.text)
                    if (c < 0x20 || c > 0x7e) fail(text->source(), prefix + "reply.text: one line of printable ASCII");
            }
            a.reply = value;
        }
        if (const toml::node* tarpit = table.get("tarpit_ms")) {
            const std::int64_t ms = require<std::int64_t>(*tarpit, prefix + "tarpit_ms", "an integer").get();
            if (ms < 0 || ms > 60000) fail(tarpit->source(), prefix + "tarpit_ms: must be from 0 to 60000");
            a.tarpit = std::chrono::milliseconds(ms);
        }
    }

    // File position of a byte offset inside the expression string `when`.
    std::pair<std::size_t, std::size_t> locate(const toml::node& node, const std::string& when, std::size_t offset,
                                               std::vector<std::size_t>& map) const {
        const auto begin = node.source().begin;
        if (map.empty()) map = map_string(text_, offset_of(text_, begin.line, begin.column), when.size());
        if (map.empty()) return {begin.line, begin.column};
        const auto pos = position_of(text_, map[std::min(offset, map.size() - 1)]);
        return {pos.line, pos.column};
    }

    std::string_view text_;
    const std::string& origin_;
    const self_identity& self_;
};

}  // namespace

rule_set rule_set::parse(std::string_view text, const std::string& origin, const self_identity& self) {
    rule_set set;
    set.origin_ = origin;
    loader reader(text, origin, self);
    set.rules_ = reader.load(set.warnings_);
    set.index();
    return set;
}

namespace {

// Closes a descriptor on every way out of load().
struct descriptor {
    int fd;
    ~descriptor() {
        if (fd >= 0) ::close(fd);
    }
};

std::string limit_text() {
    return std::to_string(max_rules_file_bytes / (1024 * 1024)) + " MiB (" + std::to_string(max_rules_file_bytes) +
           " bytes)";
}

}  // namespace

rule_set rule_set::load(const std::filesystem::path& path, const self_identity& self) {
    const std::string name = path.string();
    // O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting for one; the
    // descriptor is then refused as not a regular file. For a regular file the flag changes nothing.
    descriptor file{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)};
    if (file.fd < 0) throw rules_error(name, 0, 0, "cannot open the rules file");
    struct stat info {};
    if (::fstat(file.fd, &info) != 0) throw rules_error(name, 0, 0, "cannot read the rules file");
    if (!S_ISREG(info.st_mode))
        throw rules_error(name, 0, 0,
                          S_ISDIR(info.st_mode) ? "is a directory, not a rules file"
                                                : "not a regular file (a FIFO, socket or device is not read)");
    const auto too_large = [&] {
        return rules_error(name, 0, 0, "rules file larger than " + limit_text());
    };
    if (info.st_size < 0 || static_cast<std::uintmax_t>(info.st_size) > max_rules_file_bytes) throw too_large();
    // Read at most limit + 1 bytes whatever the size said: the file may grow after fstat. The
    // buffer starts one byte larger than the file, so that a file that grew is seen.
    std::string text(static_cast<std::size_t>(info.st_size) + 1, '\0');
    std::size_t have = 0;
    for (;;) {
        if (have == text.size()) {
            if (text.size() > max_rules_file_bytes) break;
            text.resize(std::min(text.size() * 2, max_rules_file_bytes + 1));
        }
        const ::ssize_t got = ::read(file.fd, text.data() + have, text.size() - have);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) throw rules_error(name, 0, 0, "cannot read the rules file");
        if (got == 0) break;
        have += static_cast<std::size_t>(got);
    }
    if (have > max_rules_file_bytes) throw too_large();
    text.resize(have);
    return parse(text, name, self);
}

void rule_set::index() {
    for (auto& order : order_) order.clear();
    for (std::size_t i = 0; i < rules_.size(); ++i)
        if (rules_[i].enabled) order_[static_cast<int>(rules_[i].hook)].push_back(i);
    for (auto& order : order_)
        std::stable_sort(order.begin(), order.end(), [this](std::size_t a, std::size_t b) {
            return rules_[a].priority < rules_[b].priority;
        });
}

const rule* rule_set::first_match(const context& ctx) const {
    for (std::size_t i : order_[static_cast<int>(ctx.hook)])
        if (rules_[i].matches(ctx)) return &rules_[i];
    return nullptr;
}

const rule* rule_set::find(std::string_view name) const {
    for (const auto& candidate : rules_)
        if (candidate.name == name) return &candidate;
    return nullptr;
}

// ---------------------------------------------------------------------------------------------

rule_store::rule_store(std::filesystem::path path, self_identity self, loader load)
    : path_(std::move(path)),
      self_(std::move(self)),
      load_(load ? std::move(load) : loader(&rule_set::load)),
      current_(std::make_shared<const rule_set>()) {}

std::shared_ptr<const rule_set> rule_store::current() const {
    std::lock_guard lock(mutex_);
    return current_;
}

std::optional<rules_error> rule_store::reload() {
    self_identity self;
    {
        std::lock_guard lock(mutex_);
        self = self_;
    }
    return reload(self);
}

std::optional<rules_error> rule_store::reload(const self_identity& self) {
    {
        std::lock_guard lock(mutex_);
        self_ = self;  // used by later reloads even if this file is bad
    }
    try {
        auto fresh = std::make_shared<const rule_set>(
            path_.empty() ? rule_set::parse(default_rules_text(), std::string(default_rules_origin), self)
                          : load_(path_, self));
        std::lock_guard lock(mutex_);
        current_ = std::move(fresh);
        return std::nullopt;
    } catch (const rules_error& error) {
        return error;
    } catch (const std::exception& error) {
        // Anything else (out of memory, ...) is a failed reload too, never an escaping exception.
        return rules_error(path_.empty() ? std::string(default_rules_origin) : path_.string(), 0, 0,
                           std::string("cannot load the rules: ") + error.what());
    }
}

void rule_store::install(rule_set set) {
    auto fresh = std::make_shared<const rule_set>(std::move(set));
    std::lock_guard lock(mutex_);
    current_ = std::move(fresh);
}

}  // namespace relaybait::rules
