// Reading one TOML document onto settings: every key is known, typed and range-checked here,
// and errors name the origin, the line and the dotted key.
#include <toml++/toml.h>

#include "config/toml_type_name.hpp"

#include <initializer_list>
#include <limits>
#include <optional>

#include "config/detail.hpp"

namespace relaybait::config::detail {
namespace {


struct range {
    std::int64_t min;
    std::int64_t max;
};

std::string quoted_list(std::initializer_list<std::string_view> choices) {
    std::string text;
    for (auto choice : choices) {
        if (!text.empty()) text += ", ";
        text += '"' + std::string(choice) + '"';
    }
    return text;
}

// The keys of one TOML table, read with their types and ranges checked.
class table_reader {
public:
    table_reader(const toml::table& table, std::string prefix, const std::string& origin, provenance& where)
        : table_(table), prefix_(std::move(prefix)), origin_(origin), where_(where) {}

    std::string full(std::string_view key) const {
        return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key);
    }

    void only(std::initializer_list<std::string_view> known) const {
        for (auto&& [key, value] : table_) {
            bool found = false;
            for (auto name : known) found = found || key.str() == name;
            if (!found) throw config_error(origin_, key.source().begin.line, full(key.str()), "unknown key");
        }
    }

    [[noreturn]] void fail(const toml::node& node, std::string_view key, const std::string& problem) const {
        throw config_error(origin_, node.source().begin.line, full(key), problem);
    }

    std::optional<std::int64_t> integer(std::string_view key, range allowed) {
        const toml::node* node = find(key);
        if (node == nullptr) return std::nullopt;
        const std::string expected =
            "an integer from " + std::to_string(allowed.min) + " to " + std::to_string(allowed.max);
        const auto* value = node->as_integer();
        if (value == nullptr) fail(*node, key, "expected " + expected + ", got " + std::string(toml_type_name(node->type())));
        const std::int64_t number = value->get();
        if (number < allowed.min || number > allowed.max)
            fail(*node, key, "must be " + expected + ", got " + std::to_string(number));
        return number;
    }

    std::optional<bool> boolean(std::string_view key) {
        const toml::node* node = find(key);
        if (node == nullptr) return std::nullopt;
        const auto* value = node->as_boolean();
        if (value == nullptr) fail(*node, key, "expected a boolean (true or false), got " + std::string(toml_type_name(node->type())));
        return value->get();
    }

    std::optional<std::string> string(std::string_view key) {
        const toml::node* node = find(key);
        if (node == nullptr) return std::nullopt;
        return string_of(*node, key);
    }

    std::optional<std::string> one_of(std::string_view key, std::initializer_list<std::string_view> choices) {
        const toml::node* node = find(key);
        if (node == nullptr) return std::nullopt;
        std::string value = string_of(*node, key);
        for (auto choice : choices)
            if (value == choice) return value;
        fail(*node, key, "must be one of " + quoted_list(choices) + ", got " + toml_quote(value));
    }

    std::optional<std::vector<std::string>> strings(std::string_view key) {
        const toml::node* node = find(key);
        if (node == nullptr) return std::nullopt;
        const auto* array = node->as_array();
        if (array == nullptr) fail(*node, key, "expected an array of strings, got " + std::string(toml_type_name(node->type())));
        std::vector<std::string> values;
        for (const toml::node& element : *array) {
            const auto* text = element.as_string();
            if (text == nullptr)
                fail(element, key, "expected an array of strings, got an element that is " + std::string(toml_type_name(element.type())));
            values.push_back(text->get());
        }
        return values;
    }

    // An array of strings, each checked by `check` (an empty string = fine); an error names
    // the line of the offending element.
    template <typename Check>
    std::optional<std::vector<std::string>> strings(std::string_view key, Check check) {
        auto values = strings(key);
        if (!values) return values;
        const auto& array = *table_.get(key)->as_array();
        for (std::size_t i = 0; i < values->size(); ++i)
            if (const std::string problem = check((*values)[i]); !problem.empty()) fail(array[i], key, problem);
        return values;
    }

    // A non-empty array of integers, each within `allowed`.
    std::optional<std::vector<std::int64_t>> integers(std::string_view key, range allowed) {
        const toml::node* node = find(key);
        if (node == nullptr) return std::nullopt;
        const std::string expected =
            "an integer from " + std::to_string(allowed.min) + " to " + std::to_string(allowed.max);
        const auto* array = node->as_array();
        if (array == nullptr)
            fail(*node, key, "expected a non-empty array of integers, got " + std::string(toml_type_name(node->type())));
        if (array->empty()) fail(*node, key, "must list at least one value");
        std::vector<std::int64_t> values;
        for (const toml::node& element : *array) {
            const auto* value = element.as_integer();
            if (value == nullptr)
                fail(element, key, "expected an array of integers, got an element that is " +
                                       std::string(toml_type_name(element.type())));
            if (value->get() < allowed.min || value->get() > allowed.max)
                fail(element, key, "every element must be " + expected + ", got " + std::to_string(value->get()));
            values.push_back(value->get());
        }
        return values;
    }

    // A string that is either empty or passes `check`.
    template <typename Check>
    std::optional<std::string> string(std::string_view key, Check check) {
        auto value = string(key);
        if (value && !value->empty())
            if (const std::string problem = check(*value); !problem.empty()) fail(*table_.get(key), key, problem);
        return value;
    }

    const toml::table* table(std::string_view key) {
        const toml::node* node = find(key);
        if (node == nullptr) return nullptr;
        const auto* sub = node->as_table();
        if (sub == nullptr) fail(*node, key, "expected a table, got " + std::string(toml_type_name(node->type())));
        return sub;
    }

    // An array of tables ([[key]]); an empty array is allowed.
    std::optional<std::vector<const toml::table*>> tables(std::string_view key) {
        const toml::node* node = find(key);
        if (node == nullptr) return std::nullopt;
        const auto* array = node->as_array();
        if (array == nullptr) fail(*node, key, "expected an array of tables, got " + std::string(toml_type_name(node->type())));
        std::vector<const toml::table*> values;
        for (const toml::node& element : *array) {
            if (!element.is_table())
                fail(element, key, "expected an array of tables, got an element that is " + std::string(toml_type_name(element.type())));
            values.push_back(element.as_table());
        }
        return values;
    }

private:
    const toml::node* find(std::string_view key) {
        const toml::node* node = table_.get(key);
        if (node != nullptr) where_.set(full(key), {origin_, node->source().begin.line, full(key)});
        return node;
    }

    std::string string_of(const toml::node& node, std::string_view key) const {
        const auto* value = node.as_string();
        if (value == nullptr) fail(node, key, "expected a string, got " + std::string(toml_type_name(node.type())));
        return value->get();
    }

    const toml::table& table_;
    std::string prefix_;
    const std::string& origin_;
    provenance& where_;
};

// Reads an integer key into a field of another integer type (the range keeps it in bounds).
template <typename Field>
void read_integer(table_reader& reader, std::string_view key, range allowed, Field& field) {
    if (auto value = reader.integer(key, allowed)) field = static_cast<Field>(*value);
}

void check_value(table_reader& reader, const toml::table& table, std::string_view key, const std::string& problem) {
    if (!problem.empty()) reader.fail(*table.get(key), key, problem);
}

std::string check_sensor(std::string_view name) {
    if (name.size() > 64) return "must be at most 64 characters";
    for (unsigned char c : name)
        if (c < 0x21 || c > 0x7e) return "must be printable ASCII without spaces";
    return {};
}

void apply_top_level(table_reader& reader, const toml::table& doc, settings& target) {
    if (auto value = reader.string("hostname")) {
        check_value(reader, doc, "hostname", check_hostname(*value));
        target.hostname = *value;
    }
    if (auto value = reader.string("sensor")) {
        check_value(reader, doc, "sensor", check_sensor(*value));
        target.sensor = *value;
    }
    if (auto value = reader.string("data_dir")) {
        if (value->empty()) reader.fail(*doc.get("data_dir"), "data_dir", "must not be empty");
        target.data_dir = *value;
    }
    if (auto value = reader.strings("bind")) {
        if (value->empty()) reader.fail(*doc.get("bind"), "bind", "must list at least one address");
        for (const auto& address : *value) check_value(reader, doc, "bind", check_ip_address(address));
        target.bind = *value;
    }
    read_integer(reader, "port_offset", {-65535, 65535}, target.port_offset);
    if (auto value = reader.one_of("persona", {"postfix-3.7"})) target.persona = *value;
    if (auto value = reader.one_of("log_level", {"trace", "debug", "info", "warn", "error", "critical", "off"}))
        target.log_level = *value;
    if (auto value = reader.strings("local_users")) target.local_users = *value;
}

void apply_listeners(table_reader& parent, settings& target, const std::string& origin, provenance& where) {
    const toml::table* listeners = parent.table("listeners");
    if (listeners == nullptr) return;
    table_reader reader(*listeners, "listeners", origin, where);
    reader.only({"smtp", "smtps", "submission"});
    for (listener_config& listener : target.listeners) {
        const toml::table* table = reader.table(listener.name);
        if (table == nullptr) continue;
        table_reader fields(*table, "listeners." + listener.name, origin, where);
        fields.only({"enabled", "port"});
        if (auto value = fields.boolean("enabled")) listener.enabled = *value;
        read_integer(fields, "port", {1, 65535}, listener.port);
    }
}

void apply_tls(table_reader& parent, settings& target, const std::string& origin, provenance& where) {
    const toml::table* tls = parent.table("tls");
    if (tls == nullptr) return;
    table_reader reader(*tls, "tls", origin, where);
    reader.only({"certificate", "private_key"});
    if (auto value = reader.string("certificate")) target.tls.certificate = *value;
    if (auto value = reader.string("private_key")) target.tls.private_key = *value;
}

void apply_limits(table_reader& parent, smtp::limits& target, const std::string& origin, provenance& where) {
    const toml::table* limits = parent.table("limits");
    if (limits == nullptr) return;
    table_reader reader(*limits, "limits", origin, where);
    reader.only({"line_length_bytes", "message_size_bytes", "recipients_per_message", "messages_per_session",
                 "commands_per_session", "soft_error_limit", "hard_error_limit", "error_sleep_ms",
                 "idle_timeout_seconds", "session_timeout_seconds", "sessions_per_ip", "sessions_total",
                 "transcript_bytes"});
    read_integer(reader, "line_length_bytes", {512, 1 << 20}, target.line_length);
    read_integer(reader, "message_size_bytes", {1, std::int64_t{1} << 32}, target.message_size);
    read_integer(reader, "recipients_per_message", {1, 100'000}, target.recipients_per_message);
    read_integer(reader, "messages_per_session", {1, 100'000}, target.messages_per_session);
    read_integer(reader, "commands_per_session", {1, 10'000'000}, target.commands_per_session);
    read_integer(reader, "soft_error_limit", {1, 1000}, target.soft_error_limit);
    read_integer(reader, "hard_error_limit", {1, 1000}, target.hard_error_limit);
    if (auto value = reader.integer("error_sleep_ms", {0, 600'000})) target.error_sleep = std::chrono::milliseconds{*value};
    if (auto value = reader.integer("idle_timeout_seconds", {1, 86'400})) target.idle_timeout = std::chrono::seconds{*value};
    if (auto value = reader.integer("session_timeout_seconds", {1, 604'800}))
        target.session_timeout = std::chrono::seconds{*value};
    read_integer(reader, "sessions_per_ip", {1, 1'000'000}, target.sessions_per_ip);
    read_integer(reader, "sessions_total", {1, 1'000'000}, target.sessions_total);
    read_integer(reader, "transcript_bytes", {1, 100 << 20}, target.transcript_bytes);
}

std::pair<std::string, std::string> read_accepted_pair(const toml::table& entry, const std::string& origin, provenance& where) {
    table_reader reader(entry, "auth.accept", origin, where);
    reader.only({"user", "password"});
    auto user = reader.string("user");
    auto password = reader.string("password");
    if (!user || user->empty())
        throw config_error(origin, entry.source().begin.line, "auth.accept.user", "every [[auth.accept]] needs a non-empty user");
    if (!password)
        throw config_error(origin, entry.source().begin.line, "auth.accept.password", "every [[auth.accept]] needs a password");
    return {*user, *password};
}

smtp::auth_policy::mode policy_mode(std::string_view name) {
    using mode = smtp::auth_policy::mode;
    if (name == "accept-after-failures") return mode::accept_after_failures;
    if (name == "accept-listed") return mode::accept_listed;
    if (name == "reject-all") return mode::reject_all;
    return mode::accept_all;
}

void apply_auth(table_reader& parent, smtp::auth_policy& target, const std::string& origin, provenance& where) {
    const toml::table* auth = parent.table("auth");
    if (auth == nullptr) return;
    table_reader reader(*auth, "auth", origin, where);
    reader.only({"policy", "failures_before_accept", "accept"});
    if (auto value = reader.one_of("policy", {"accept-all", "accept-after-failures", "accept-listed", "reject-all"}))
        target.policy = policy_mode(*value);
    read_integer(reader, "failures_before_accept", {0, 1000}, target.failures_before_accept);
    if (auto entries = reader.tables("accept")) {
        target.accepted_pairs.clear();
        for (const toml::table* entry : *entries) target.accepted_pairs.push_back(read_accepted_pair(*entry, origin, where));
    }
}

void apply_events(table_reader& parent, event_log_config& target, const std::string& origin, provenance& where) {
    const toml::table* events = parent.table("events");
    if (events == nullptr) return;
    table_reader reader(*events, "events", origin, where);
    reader.only({"rotate_bytes", "keep_files"});
    read_integer(reader, "rotate_bytes", {1 << 20, std::int64_t{1} << 40}, target.rotate_bytes);
    read_integer(reader, "keep_files", {1, 10'000}, target.keep_files);
}

void apply_rules(table_reader& parent, rules_config& target, const std::string& origin, provenance& where) {
    const toml::table* rules = parent.table("rules");
    if (rules == nullptr) return;
    table_reader reader(*rules, "rules", origin, where);
    reader.only({"file", "max_scan_bytes"});
    if (auto value = reader.string("file")) target.file = *value;
    read_integer(reader, "max_scan_bytes", {1024, std::int64_t{1} << 30}, target.max_scan_bytes);
}

void apply_identity(table_reader& parent, identity_config& target, const std::string& origin, provenance& where) {
    const toml::table* identity = parent.table("identity");
    if (identity == nullptr) return;
    table_reader reader(*identity, "identity", origin, where);
    reader.only({"ipv4", "ipv6", "interface_addresses", "discover", "discover_urls", "discover_timeout_ms"});
    if (auto value = reader.strings("ipv4", check_ipv4_address)) target.ipv4 = *value;
    if (auto value = reader.strings("ipv6", check_ipv6_address)) target.ipv6 = *value;
    if (auto value = reader.boolean("interface_addresses")) target.interface_addresses = *value;
    if (auto value = reader.boolean("discover")) target.discover = *value;
    if (auto value = reader.strings("discover_urls", check_url)) target.discover_urls = *value;
    read_integer(reader, "discover_timeout_ms", {100, 60'000}, target.discover_timeout_ms);
}

std::string check_domain(std::string_view name) {
    return check_hostname(name).empty() ? std::string{} : toml_quote(name) + " is not a domain name";
}

void apply_relay(table_reader& parent, relay_config& target, const std::string& origin, provenance& where) {
    const toml::table* relay = parent.table("relay");
    if (relay == nullptr) return;
    table_reader reader(*relay, "relay", origin, where);
    reader.only({"enabled", "daily", "per_recipient_daily", "per_sender_daily", "per_client_ip_daily",
                 "per_domain_daily", "max_size_bytes", "max_recipients", "test_mode", "test_server", "test_recipient",
                 "ports", "force_ipv4_domains", "dns_servers", "dns_timeout_ms", "max_mx_hosts", "max_attempts",
                 "retry_base_seconds", "retry_max_seconds", "poll_interval_ms", "connect_timeout_seconds",
                 "command_timeout_seconds", "starttls", "allow_private_destinations"});
    if (auto value = reader.boolean("enabled")) target.enabled = *value;
    read_integer(reader, "daily", {0, 100'000}, target.daily);
    read_integer(reader, "per_recipient_daily", {0, 100'000}, target.per_recipient_daily);
    read_integer(reader, "per_sender_daily", {0, 100'000}, target.per_sender_daily);
    read_integer(reader, "per_client_ip_daily", {0, 100'000}, target.per_client_ip_daily);
    read_integer(reader, "per_domain_daily", {0, 100'000}, target.per_domain_daily);
    read_integer(reader, "max_size_bytes", {1, 100 << 20}, target.max_size_bytes);
    read_integer(reader, "max_recipients", {1, 1000}, target.max_recipients);
    if (auto value = reader.boolean("test_mode")) target.test_mode = *value;
    if (auto value = reader.string("test_server", check_host_port)) target.test_server = *value;
    if (auto value = reader.string("test_recipient", check_mail_address)) target.test_recipient = *value;
    if (auto values = reader.integers("ports", {1, 65535})) {
        target.ports.clear();
        for (std::int64_t port : *values) target.ports.push_back(static_cast<std::uint16_t>(port));
    }
    if (auto value = reader.strings("force_ipv4_domains", check_domain)) target.force_ipv4_domains = *value;
    if (auto value = reader.strings("dns_servers", check_dns_server)) target.dns_servers = *value;
    read_integer(reader, "dns_timeout_ms", {100, 60'000}, target.dns_timeout_ms);
    read_integer(reader, "max_mx_hosts", {1, 10}, target.max_mx_hosts);
    read_integer(reader, "max_attempts", {1, 100}, target.max_attempts);
    read_integer(reader, "retry_base_seconds", {1, 604'800}, target.retry_base_seconds);
    read_integer(reader, "retry_max_seconds", {1, 604'800}, target.retry_max_seconds);
    read_integer(reader, "poll_interval_ms", {100, 600'000}, target.poll_interval_ms);
    read_integer(reader, "connect_timeout_seconds", {1, 3600}, target.connect_timeout_seconds);
    read_integer(reader, "command_timeout_seconds", {1, 3600}, target.command_timeout_seconds);
    if (auto value = reader.boolean("starttls")) target.starttls = *value;
    if (auto value = reader.boolean("allow_private_destinations")) target.allow_private_destinations = *value;
}

toml::table parse_document(std::string_view toml_text, const std::string& origin) {
    try {
        return toml::parse(toml_text, origin);
    } catch (const toml::parse_error& error) {
        throw config_error(origin, error.source().begin.line, error.source().begin.column,
                           std::string(error.description()));
    }
}

}  // namespace

void apply_toml(settings& target, std::string_view toml_text, const std::string& origin, provenance& where) {
    const toml::table doc = parse_document(toml_text, origin);
    table_reader reader(doc, "", origin, where);
    reader.only({"hostname", "sensor", "data_dir", "bind", "port_offset", "persona", "log_level", "local_users",
                 "listeners", "tls", "limits", "auth", "events", "rules", "identity", "relay"});
    apply_top_level(reader, doc, target);
    apply_listeners(reader, target, origin, where);
    apply_tls(reader, target, origin, where);
    apply_limits(reader, target.limits, origin, where);
    apply_auth(reader, target.auth, origin, where);
    apply_events(reader, target.events, origin, where);
    apply_rules(reader, target.rules, origin, where);
    apply_identity(reader, target.identity, origin, where);
    apply_relay(reader, target.relay, origin, where);
}

}  // namespace relaybait::config::detail
