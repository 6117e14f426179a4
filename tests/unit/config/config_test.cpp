#include "config/config.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <random>

namespace relaybait::config {
namespace {

namespace fs = std::filesystem;

class temp_dir {
public:
    temp_dir() {
        std::random_device random;
        path_ = fs::temp_directory_path() / ("relaybait-config-test-" + std::to_string(random()));
        fs::create_directories(path_);
    }
    ~temp_dir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }
    fs::path write(const std::string& name, const std::string& text) const {
        std::ofstream(path_ / name, std::ios::binary) << text;
        return path_ / name;
    }

private:
    fs::path path_;
};

// Applies `text` as a file named "test.toml" and returns the error it raises.
config_error error_of(const std::string& text) {
    try {
        apply_toml(settings{}, text, "test.toml");
    } catch (const config_error& error) {
        return error;
    }
    ADD_FAILURE() << "no config_error for:\n" << text;
    return config_error("", 0, "", "");
}

TEST(config_defaults, embedded_text_is_the_example_file) {
    std::ifstream in(fs::path(RELAYBAIT_SOURCE_DIR) / "relaybait.example.toml", std::ios::binary);
    std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(default_config_text(), file);
}

TEST(config_defaults, embedded_defaults_match_the_struct_defaults) {
    // Every default lives twice (the documented file and the C++ struct); they must agree.
    const settings parsed = apply_toml(settings{}, default_config_text(), "defaults");
    EXPECT_EQ(to_toml(parsed), to_toml(settings{}));
}

TEST(config_defaults, load_without_file_gives_the_defaults) {
    const settings loaded = load({});
    EXPECT_EQ(loaded.hostname, "mail.example.com");
    EXPECT_EQ(loaded.sensor, "mail.example.com");  // resolved from the hostname
    EXPECT_EQ(loaded.data_dir, std::filesystem::absolute("relaybait-data"));  // resolved once, at load
    EXPECT_TRUE(loaded.data_dir.is_absolute());
    ASSERT_EQ(loaded.listeners.size(), 3u);
    EXPECT_EQ(loaded.listeners[0].name, "smtp");
    EXPECT_EQ(loaded.listeners[0].port, 25);
    EXPECT_EQ(loaded.listeners[1].kind, smtp::listener_kind::smtps);
    EXPECT_EQ(loaded.listeners[1].port, 465);
    EXPECT_EQ(loaded.listeners[2].port, 587);
    EXPECT_EQ(loaded.limits.message_size, 10'240'000u);
    EXPECT_EQ(loaded.limits.idle_timeout, std::chrono::seconds{300});
    EXPECT_EQ(loaded.limits.error_sleep, std::chrono::milliseconds{1000});
    EXPECT_EQ(loaded.auth.policy, smtp::auth_policy::mode::accept_all);
    EXPECT_TRUE(loaded.tls.certificate.empty());
    EXPECT_EQ(loaded.effective_port(loaded.listeners[2]), 587);
}

TEST(config_defaults, example_file_on_disk_is_valid) {
    overrides cli;
    cli.config_file = fs::path(RELAYBAIT_SOURCE_DIR) / "relaybait.example.toml";
    EXPECT_NO_THROW(load(cli));
}

TEST(config_file, sets_every_section) {
    const settings s = apply_toml(settings{}, R"(
hostname = "mx2.example.org"
sensor = "eu-1"
bind = ["0.0.0.0", "::1"]
port_offset = 10000
log_level = "debug"
local_users = ["alice"]
[listeners.smtps]
enabled = false
[listeners.submission]
port = 2587
[tls]
certificate = "/etc/ssl/c.pem"
private_key = "/etc/ssl/k.pem"
[limits]
message_size_bytes = 5000
error_sleep_ms = 0
idle_timeout_seconds = 60
[auth]
policy = "accept-listed"
[[auth.accept]]
user = "info"
password = "123456"
[[auth.accept]]
user = "admin"
password = ""
[events]
keep_files = 3
)",
                                  "test.toml");
    EXPECT_EQ(s.hostname, "mx2.example.org");
    EXPECT_EQ(s.sensor, "eu-1");
    EXPECT_EQ(s.bind, (std::vector<std::string>{"0.0.0.0", "::1"}));
    EXPECT_EQ(s.port_offset, 10000);
    EXPECT_EQ(s.log_level, "debug");
    EXPECT_EQ(s.local_users, std::vector<std::string>{"alice"});
    EXPECT_TRUE(s.listeners[0].enabled);
    EXPECT_FALSE(s.listeners[1].enabled);
    EXPECT_EQ(s.effective_port(s.listeners[2]), 12587);
    EXPECT_EQ(s.tls.private_key, "/etc/ssl/k.pem");
    EXPECT_EQ(s.limits.message_size, 5000u);
    EXPECT_EQ(s.limits.error_sleep, std::chrono::milliseconds{0});
    EXPECT_EQ(s.limits.idle_timeout, std::chrono::seconds{60});
    EXPECT_EQ(s.limits.line_length, 2048u);  // untouched keys keep the base value
    EXPECT_EQ(s.auth.policy, smtp::auth_policy::mode::accept_listed);
    ASSERT_EQ(s.auth.accepted_pairs.size(), 2u);
    EXPECT_EQ(s.auth.accepted_pairs[0], (std::pair<std::string, std::string>{"info", "123456"}));
    EXPECT_EQ(s.events.keep_files, 3u);
    // And it survives a trip through `config show`.
    EXPECT_EQ(to_toml(apply_toml(settings{}, to_toml(s), "shown")), to_toml(s));
}

TEST(config_file, to_toml_escapes_strings) {
    settings s;
    s.local_users = {"a\"b\\c\x1b[31m"};
    const settings back = apply_toml(settings{}, to_toml(s), "shown");
    EXPECT_EQ(back.local_users, s.local_users);
}

TEST(config_errors, what_is_file_line_key_problem) {
    EXPECT_STREQ(config_error("f.toml", 3, "limits.x", "unknown key").what(), "f.toml:3: limits.x: unknown key");
    EXPECT_STREQ(config_error("<command line>", 0, "--bind", "bad").what(), "<command line>: --bind: bad");
    EXPECT_STREQ(config_error("f.toml", 2, std::size_t{7}, "oops").what(), "f.toml:2:7: oops");
}

TEST(config_errors, unknown_top_level_key) {
    const auto error = error_of("hostname = \"a.example\"\n\nhostnmae = \"b\"\n");
    EXPECT_EQ(error.file(), "test.toml");
    EXPECT_EQ(error.line(), 3u);
    EXPECT_EQ(error.key(), "hostnmae");
    EXPECT_STREQ(error.what(), "test.toml:3: hostnmae: unknown key");
}

TEST(config_errors, unknown_key_in_a_section) {
    const auto error = error_of("[limits]\nline_length_bytes = 1000\nmax_bytes = 5\n");
    EXPECT_STREQ(error.what(), "test.toml:3: limits.max_bytes: unknown key");
    EXPECT_STREQ(error_of("[listeners.pop3]\nport = 110\n").what(), "test.toml:1: listeners.pop3: unknown key");
    EXPECT_STREQ(error_of("[listeners.smtp]\nenabled = true\nportt = 1\n").what(),
                 "test.toml:3: listeners.smtp.portt: unknown key");
    EXPECT_STREQ(error_of("[auth]\n[[auth.accept]]\nuser = \"a\"\npassword = \"b\"\nrealm = \"c\"\n").what(),
                 "test.toml:5: auth.accept.realm: unknown key");
}

TEST(config_errors, wrong_type_names_the_expected_type) {
    EXPECT_STREQ(error_of("[listeners.smtp]\nport = \"25\"\n").what(),
                 "test.toml:2: listeners.smtp.port: expected an integer from 1 to 65535, got a string");
    EXPECT_STREQ(error_of("[listeners.smtp]\nenabled = 1\n").what(),
                 "test.toml:2: listeners.smtp.enabled: expected a boolean (true or false), got an integer");
    EXPECT_STREQ(error_of("hostname = 5\n").what(), "test.toml:1: hostname: expected a string, got an integer");
    EXPECT_STREQ(error_of("bind = \"::\"\n").what(), "test.toml:1: bind: expected an array of strings, got a string");
    EXPECT_STREQ(error_of("bind = [\"::\", 1]\n").what(),
                 "test.toml:1: bind: expected an array of strings, got an element that is an integer");
    EXPECT_STREQ(error_of("tls = 1\n").what(), "test.toml:1: tls: expected a table, got an integer");
    EXPECT_STREQ(error_of("[limits]\nerror_sleep_ms = 1.5\n").what(),
                 "test.toml:2: limits.error_sleep_ms: expected an integer from 0 to 600000, got a floating-point number");
}

TEST(config_errors, out_of_range_names_the_range) {
    EXPECT_STREQ(error_of("[listeners.smtps]\nport = 70000\n").what(),
                 "test.toml:2: listeners.smtps.port: must be an integer from 1 to 65535, got 70000");
    EXPECT_STREQ(error_of("[limits]\nsessions_total = 0\n").what(),
                 "test.toml:2: limits.sessions_total: must be an integer from 1 to 1000000, got 0");
    EXPECT_STREQ(error_of("[limits]\nline_length_bytes = 100\n").what(),
                 "test.toml:2: limits.line_length_bytes: must be an integer from 512 to 1048576, got 100");
    EXPECT_STREQ(error_of("[events]\nkeep_files = -1\n").what(),
                 "test.toml:2: events.keep_files: must be an integer from 1 to 10000, got -1");
}

TEST(config_errors, bad_enum_lists_the_choices) {
    EXPECT_STREQ(error_of("[auth]\npolicy = \"yes\"\n").what(),
                 "test.toml:2: auth.policy: must be one of \"accept-all\", \"accept-after-failures\", "
                 "\"accept-listed\", \"reject-all\", got \"yes\"");
    EXPECT_STREQ(error_of("log_level = \"loud\"\n").what(),
                 "test.toml:1: log_level: must be one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", "
                 "\"critical\", \"off\", got \"loud\"");
    EXPECT_STREQ(error_of("persona = \"exim\"\n").what(), "test.toml:1: persona: must be one of \"postfix-3.7\", got \"exim\"");
}

TEST(config_errors, bad_values) {
    EXPECT_STREQ(error_of("hostname = \"mail..example.com\"\n").what(),
                 "test.toml:1: hostname: is not a valid hostname: it must not have an empty label (two dots, or a "
                 "dot at either end)");
    EXPECT_STREQ(error_of("hostname = \"mail_1.example.com\"\n").what(),
                 "test.toml:1: hostname: is not a valid hostname: it may only contain letters, digits, '-' and '.'");
    EXPECT_STREQ(error_of("hostname = \"-mx.example.com\"\n").what(),
                 "test.toml:1: hostname: is not a valid hostname: it has a label that starts or ends with '-'");
    EXPECT_EQ(error_of("hostname = \"" + std::string(64, 'a') + ".example\"\n").key(), "hostname");
    EXPECT_STREQ(error_of("hostname = \"\"\n").what(), "test.toml:1: hostname: must not be empty");
    EXPECT_STREQ(error_of("bind = [\"::\", \"localhost\"]\n").what(),
                 "test.toml:1: bind: \"localhost\" is not an IPv4 or IPv6 address");
    EXPECT_STREQ(error_of("bind = []\n").what(), "test.toml:1: bind: must list at least one address");
    EXPECT_STREQ(error_of("sensor = \"a b\"\n").what(), "test.toml:1: sensor: must be printable ASCII without spaces");
    EXPECT_STREQ(error_of("\n[auth]\n[[auth.accept]]\npassword = \"x\"\n").what(),
                 "test.toml:3: auth.accept.user: every [[auth.accept]] needs a non-empty user");
}

TEST(config_errors, syntax_error_has_line_and_column) {
    const auto error = error_of("hostname = \"a.example\"\nport_offset = = 3\n");
    EXPECT_EQ(error.file(), "test.toml");
    EXPECT_EQ(error.line(), 2u);
    EXPECT_GT(error.column(), 0u);
    EXPECT_EQ(std::string(error.what()).rfind("test.toml:2:" + std::to_string(error.column()) + ": ", 0), 0u)
        << error.what();
    EXPECT_FALSE(error.problem().empty());
}

TEST(config_errors, certificate_and_key_go_together) {
    EXPECT_STREQ(error_of("\n[tls]\ncertificate = \"c.pem\"\n").what(),
                 "test.toml:3: tls.certificate: is set but tls.private_key is not: give both or neither");
    EXPECT_STREQ(error_of("[tls]\nprivate_key = \"k.pem\"\n").what(),
                 "test.toml:2: tls.private_key: is set but tls.certificate is not: give both or neither");
}

TEST(config_errors, accept_listed_needs_pairs) {
    EXPECT_STREQ(error_of("[auth]\npolicy = \"accept-listed\"\n").what(),
                 "test.toml:2: auth.policy: \"accept-listed\" needs at least one [[auth.accept]] user/password pair");
}

// A relative data_dir, from a file or from --data-dir, is resolved once against the working
// directory of the process that loads it: the paths the server records stay valid.
TEST(config_load, a_relative_data_dir_is_made_absolute_against_the_working_directory) {
    temp_dir dir;
    overrides cli;
    cli.config_file = dir.write("relaybait.toml", "data_dir = \"var/data\"\n");
    settings s = load(cli);
    EXPECT_TRUE(s.data_dir.is_absolute());
    EXPECT_EQ(s.data_dir, fs::current_path() / "var/data");
    cli.data_dir = "other";
    s = load(cli);
    EXPECT_EQ(s.data_dir, fs::current_path() / "other");
}

TEST(config_load, file_then_overrides) {
    temp_dir dir;
    overrides cli;
    cli.config_file = dir.write("relaybait.toml", "hostname = \"file.example.net\"\ndata_dir = \"/var/lib/a\"\n"
                                                  "port_offset = 100\nbind = [\"127.0.0.1\"]\n");
    settings s = load(cli);
    EXPECT_EQ(s.hostname, "file.example.net");
    EXPECT_EQ(s.sensor, "file.example.net");
    EXPECT_EQ(s.data_dir, "/var/lib/a");
    EXPECT_EQ(s.port_offset, 100);
    EXPECT_EQ(s.bind, std::vector<std::string>{"127.0.0.1"});

    cli.hostname = "cli.example.net";
    cli.data_dir = "/tmp/b";
    cli.port_offset = 10000;
    cli.bind = "::1";
    s = load(cli);
    EXPECT_EQ(s.hostname, "cli.example.net");
    EXPECT_EQ(s.sensor, "cli.example.net");
    EXPECT_EQ(s.data_dir, "/tmp/b");
    EXPECT_EQ(s.port_offset, 10000);
    EXPECT_EQ(s.bind, std::vector<std::string>{"::1"});
    EXPECT_EQ(s.effective_port(s.listeners[0]), 10025);
}

TEST(config_load, port_plus_offset_out_of_range_names_who_set_the_offset) {
    temp_dir dir;
    overrides cli;
    cli.config_file = dir.write("r.toml", "# comment\nport_offset = 65500\n");
    try {
        load(cli);
        FAIL() << "no error";
    } catch (const config_error& error) {
        EXPECT_EQ(error.file(), cli.config_file->string());
        EXPECT_EQ(error.line(), 2u);
        EXPECT_EQ(error.key(), "port_offset");
        EXPECT_EQ(error.problem(), "listeners.smtps.port 465 + port_offset 65500 = 65965 is outside 1 to 65535")
            << error.what();  // smtp is fine; smtps 465 + 65500 is not
    } catch (...) {
        FAIL();
    }
    cli.port_offset = -30;
    try {
        load(cli);
        FAIL() << "no error";
    } catch (const config_error& error) {
        EXPECT_STREQ(error.what(),
                     "<command line>: --port-offset: listeners.smtp.port 25 + port_offset -30 = -5 is outside 1 to 65535");
    }
}

TEST(config_load, disabled_listener_is_not_checked) {
    temp_dir dir;
    overrides cli;
    cli.config_file = dir.write("r.toml", "port_offset = -30\n[listeners.smtp]\nenabled = false\n");
    EXPECT_EQ(load(cli).port_offset, -30);
}

TEST(config_load, bad_overrides_are_errors) {
    overrides cli;
    cli.hostname = "bad host";
    EXPECT_THROW(load(cli), config_error);
    cli = {};
    cli.bind = "localhost";
    try {
        load(cli);
        FAIL();
    } catch (const config_error& error) {
        EXPECT_STREQ(error.what(), "<command line>: --bind: \"localhost\" is not an IPv4 or IPv6 address");
    }
}

TEST(config_load, missing_file_names_the_file) {
    overrides cli;
    cli.config_file = "/nonexistent/relaybait.toml";
    try {
        load(cli);
        FAIL();
    } catch (const config_error& error) {
        EXPECT_EQ(error.file(), "/nonexistent/relaybait.toml");
        EXPECT_NE(std::string(error.what()).find("cannot read the configuration file"), std::string::npos);
    }
}

TEST(config_load, errors_in_the_file_name_the_file) {
    temp_dir dir;
    overrides cli;
    cli.config_file = dir.write("r.toml", "[limits]\n\nhard_error_limit = 0\n");
    try {
        load(cli);
        FAIL();
    } catch (const config_error& error) {
        EXPECT_EQ(std::string(error.what()),
                  cli.config_file->string() + ":3: limits.hard_error_limit: must be an integer from 1 to 1000, got 0");
    }
}

// --- [rules], [identity], [relay] -------------------------------------------------------------

TEST(config_defaults, new_sections_have_the_documented_defaults) {
    const settings s = load({});
    EXPECT_TRUE(s.rules.file.empty());
    EXPECT_TRUE(s.rules.resolved_file.empty());  // the embedded default rules
    EXPECT_EQ(s.rules.max_scan_bytes, 4u << 20);
    EXPECT_TRUE(s.identity.ipv4.empty());
    EXPECT_TRUE(s.identity.interface_addresses);
    EXPECT_FALSE(s.identity.discover);
    EXPECT_EQ(s.identity.discover_urls.size(), 2u);
    EXPECT_EQ(s.identity.discover_timeout_ms, 5000u);
    EXPECT_TRUE(s.relay.enabled);
    EXPECT_EQ(s.relay.daily, 20u);
    EXPECT_FALSE(s.relay.test_mode);
    EXPECT_EQ(s.relay.ports, std::vector<std::uint16_t>{25});
    EXPECT_EQ(s.relay.retry_max_seconds, 14400u);
    EXPECT_TRUE(s.config_file.empty());
}

const char* const every_new_key = R"(
[rules]
file = "my-rules.toml"
max_scan_bytes = 65536
[identity]
ipv4 = ["203.0.113.5", "198.51.100.1"]
ipv6 = ["2001:db8::25"]
interface_addresses = false
discover = true
discover_urls = ["http://127.0.0.1:8080/ip", "https://[2001:db8::1]/"]
discover_timeout_ms = 300
[relay]
enabled = false
daily = 0
per_recipient_daily = 1
per_sender_daily = 2
per_client_ip_daily = 3
per_domain_daily = 4
max_size_bytes = 2048
max_recipients = 2
test_mode = true
test_server = "[::1]:2525"
test_recipient = "me@operator.example"
ports = [465, 25, 587]
force_ipv4_domains = ["gmail.com", "outlook.com"]
dns_servers = ["127.0.0.1", "9.9.9.9:5353", "::1", "[2001:db8::53]:53"]
dns_timeout_ms = 100
max_mx_hosts = 10
max_attempts = 1
retry_base_seconds = 60
retry_max_seconds = 60
poll_interval_ms = 600000
connect_timeout_seconds = 5
command_timeout_seconds = 3600
starttls = false
allow_private_destinations = true
)";

TEST(config_file, reads_every_new_key) {
    const settings s = apply_toml(settings{}, every_new_key, "test.toml");
    EXPECT_EQ(s.rules.file, "my-rules.toml");
    EXPECT_TRUE(s.rules.resolved_file.empty());  // only load() resolves
    EXPECT_EQ(s.rules.max_scan_bytes, 65536u);
    EXPECT_EQ(s.identity.ipv4, (std::vector<std::string>{"203.0.113.5", "198.51.100.1"}));
    EXPECT_EQ(s.identity.ipv6, std::vector<std::string>{"2001:db8::25"});
    EXPECT_FALSE(s.identity.interface_addresses);
    EXPECT_TRUE(s.identity.discover);
    EXPECT_EQ(s.identity.discover_urls, (std::vector<std::string>{"http://127.0.0.1:8080/ip", "https://[2001:db8::1]/"}));
    EXPECT_EQ(s.identity.discover_timeout_ms, 300u);
    const relay_config& r = s.relay;
    EXPECT_FALSE(r.enabled);
    EXPECT_EQ(r.daily, 0u);
    EXPECT_EQ(r.per_recipient_daily, 1u);
    EXPECT_EQ(r.per_sender_daily, 2u);
    EXPECT_EQ(r.per_client_ip_daily, 3u);
    EXPECT_EQ(r.per_domain_daily, 4u);
    EXPECT_EQ(r.max_size_bytes, 2048u);
    EXPECT_EQ(r.max_recipients, 2u);
    EXPECT_TRUE(r.test_mode);
    EXPECT_EQ(r.test_server, "[::1]:2525");
    EXPECT_EQ(r.test_recipient, "me@operator.example");
    EXPECT_EQ(r.ports, (std::vector<std::uint16_t>{465, 25, 587}));
    EXPECT_EQ(r.force_ipv4_domains, (std::vector<std::string>{"gmail.com", "outlook.com"}));
    EXPECT_EQ(r.dns_servers, (std::vector<std::string>{"127.0.0.1", "9.9.9.9:5353", "::1", "[2001:db8::53]:53"}));
    EXPECT_EQ(r.dns_timeout_ms, 100u);
    EXPECT_EQ(r.max_mx_hosts, 10u);
    EXPECT_EQ(r.max_attempts, 1u);
    EXPECT_EQ(r.retry_base_seconds, 60u);
    EXPECT_EQ(r.retry_max_seconds, 60u);
    EXPECT_EQ(r.poll_interval_ms, 600000u);
    EXPECT_EQ(r.connect_timeout_seconds, 5u);
    EXPECT_EQ(r.command_timeout_seconds, 3600u);
    EXPECT_FALSE(r.starttls);
    EXPECT_TRUE(r.allow_private_destinations);
    EXPECT_FALSE(relay_config{}.allow_private_destinations);  // off unless asked for
}

TEST(config_file, new_sections_round_trip_through_to_toml) {
    const settings s = apply_toml(settings{}, every_new_key, "test.toml");
    const std::string shown = to_toml(s);
    EXPECT_NE(shown.find("[relay]"), std::string::npos);
    EXPECT_NE(shown.find("[identity]"), std::string::npos);
    EXPECT_NE(shown.find("[rules]"), std::string::npos);
    const settings back = apply_toml(settings{}, shown, "shown");
    EXPECT_EQ(to_toml(back), shown);
    EXPECT_EQ(back.relay.ports, s.relay.ports);
    EXPECT_EQ(back.relay.dns_servers, s.relay.dns_servers);
    EXPECT_EQ(back.relay.test_server, s.relay.test_server);
    EXPECT_EQ(back.identity.discover_urls, s.identity.discover_urls);
    EXPECT_EQ(back.rules.file, s.rules.file);
    EXPECT_EQ(back.relay.daily, 0u);
    EXPECT_FALSE(back.relay.starttls);
    EXPECT_TRUE(back.relay.allow_private_destinations);
    // An empty array that replaced a default one stays empty.
    settings empty;
    empty.relay.force_ipv4_domains.clear();
    EXPECT_TRUE(apply_toml(settings{}, to_toml(empty), "shown").relay.force_ipv4_domains.empty());
}

TEST(config_errors, new_sections_unknown_keys_and_types) {
    EXPECT_STREQ(error_of("[relay]\ndaily = 1\ndialy = 2\n").what(), "test.toml:3: relay.dialy: unknown key");
    EXPECT_STREQ(error_of("[identity]\nipv5 = []\n").what(), "test.toml:2: identity.ipv5: unknown key");
    EXPECT_STREQ(error_of("[rules]\npath = \"r.toml\"\n").what(), "test.toml:2: rules.path: unknown key");
    EXPECT_STREQ(error_of("relay = 1\n").what(), "test.toml:1: relay: expected a table, got an integer");
    EXPECT_STREQ(error_of("[relay]\nenabled = \"no\"\n").what(),
                 "test.toml:2: relay.enabled: expected a boolean (true or false), got a string");
    EXPECT_STREQ(error_of("[relay]\nallow_private_destinations = 1\n").what(),
                 "test.toml:2: relay.allow_private_destinations: expected a boolean (true or false), got an integer");
    EXPECT_STREQ(error_of("[rules]\nfile = 1\n").what(), "test.toml:2: rules.file: expected a string, got an integer");
    EXPECT_STREQ(error_of("[identity]\nipv4 = \"1.2.3.4\"\n").what(),
                 "test.toml:2: identity.ipv4: expected an array of strings, got a string");
    EXPECT_STREQ(error_of("[relay]\nports = 25\n").what(),
                 "test.toml:2: relay.ports: expected a non-empty array of integers, got an integer");
    EXPECT_STREQ(error_of("[relay]\nports = [25, \"465\"]\n").what(),
                 "test.toml:2: relay.ports: expected an array of integers, got an element that is a string");
}

TEST(config_errors, new_sections_ranges) {
    struct case_ {
        std::string text;
        std::string what;
    };
    const std::vector<case_> cases = {
        {"[rules]\nmax_scan_bytes = 10\n", "rules.max_scan_bytes: must be an integer from 1024 to 1073741824, got 10"},
        {"[identity]\ndiscover_timeout_ms = 99\n", "identity.discover_timeout_ms: must be an integer from 100 to 60000, got 99"},
        {"[relay]\ndaily = -1\n", "relay.daily: must be an integer from 0 to 100000, got -1"},
        {"[relay]\ndaily = 100001\n", "relay.daily: must be an integer from 0 to 100000, got 100001"},
        {"[relay]\nper_recipient_daily = 100001\n", "relay.per_recipient_daily: must be an integer from 0 to 100000, got 100001"},
        {"[relay]\nper_sender_daily = -5\n", "relay.per_sender_daily: must be an integer from 0 to 100000, got -5"},
        {"[relay]\nper_client_ip_daily = 100001\n", "relay.per_client_ip_daily: must be an integer from 0 to 100000, got 100001"},
        {"[relay]\nper_domain_daily = 100001\n", "relay.per_domain_daily: must be an integer from 0 to 100000, got 100001"},
        {"[relay]\nmax_size_bytes = 0\n", "relay.max_size_bytes: must be an integer from 1 to 104857600, got 0"},
        {"[relay]\nmax_recipients = 1001\n", "relay.max_recipients: must be an integer from 1 to 1000, got 1001"},
        {"[relay]\nports = []\n", "relay.ports: must list at least one value"},
        {"[relay]\nports = [25, 0]\n", "relay.ports: every element must be an integer from 1 to 65535, got 0"},
        {"[relay]\nports = [65536]\n", "relay.ports: every element must be an integer from 1 to 65535, got 65536"},
        {"[relay]\ndns_timeout_ms = 60001\n", "relay.dns_timeout_ms: must be an integer from 100 to 60000, got 60001"},
        {"[relay]\nmax_mx_hosts = 11\n", "relay.max_mx_hosts: must be an integer from 1 to 10, got 11"},
        {"[relay]\nmax_attempts = 0\n", "relay.max_attempts: must be an integer from 1 to 100, got 0"},
        {"[relay]\nretry_base_seconds = 0\n", "relay.retry_base_seconds: must be an integer from 1 to 604800, got 0"},
        {"[relay]\nretry_max_seconds = 604801\n", "relay.retry_max_seconds: must be an integer from 1 to 604800, got 604801"},
        {"[relay]\npoll_interval_ms = 99\n", "relay.poll_interval_ms: must be an integer from 100 to 600000, got 99"},
        {"[relay]\nconnect_timeout_seconds = 0\n", "relay.connect_timeout_seconds: must be an integer from 1 to 3600, got 0"},
        {"[relay]\ncommand_timeout_seconds = 3601\n", "relay.command_timeout_seconds: must be an integer from 1 to 3600, got 3601"},
    };
    for (const auto& c : cases) EXPECT_EQ(error_of(c.text).what(), "test.toml:2: " + c.what) << c.text;
}

TEST(config_errors, new_sections_bad_values) {
    struct case_ {
        std::string text;
        std::string what;
    };
    const std::vector<case_> cases = {
        {"[identity]\nipv4 = [\"::1\"]\n", "identity.ipv4: \"::1\" is not an IPv4 address"},
        {"[identity]\nipv4 = [\"1.2.3\"]\n", "identity.ipv4: \"1.2.3\" is not an IPv4 address"},
        {"[identity]\nipv6 = [\"192.0.2.1\"]\n", "identity.ipv6: \"192.0.2.1\" is not an IPv6 address"},
        {"[identity]\ndiscover_urls = [\"ftp://x.example\"]\n",
         "identity.discover_urls: \"ftp://x.example\" is not an http:// or https:// URL with a host"},
        {"[identity]\ndiscover_urls = [\"https://\"]\n",
         "identity.discover_urls: \"https://\" is not an http:// or https:// URL with a host"},
        {"[identity]\ndiscover_urls = [\"https://a b/\"]\n",
         "identity.discover_urls: \"https://a b/\" is not an http:// or https:// URL with a host"},
        {"[identity]\ndiscover_urls = [\"http://x.example:99999/\"]\n",
         "identity.discover_urls: \"http://x.example:99999/\" has a port outside 1 to 65535"},
        {"[relay]\ndns_servers = [\"dns.example\"]\n",
         "relay.dns_servers: \"dns.example\" is not \"ip\", \"ip:port\" or \"[ipv6]:port\""},
        {"[relay]\ndns_servers = [\"1.1.1.1:0\"]\n", "relay.dns_servers: \"1.1.1.1:0\" has a port outside 1 to 65535"},
        {"[relay]\ndns_servers = [\"[::1]\"]\n",
         "relay.dns_servers: \"[::1]\" is not \"ip\", \"ip:port\" or \"[ipv6]:port\""},
        {"[relay]\ndns_servers = [\"[1.2.3.4]:53\"]\n",
         "relay.dns_servers: \"[1.2.3.4]:53\" is not \"ip\", \"ip:port\" or \"[ipv6]:port\""},
        {"[relay]\ntest_server = \"mx.example\"\n",
         "relay.test_server: must be \"host:port\" (IPv6: \"[address]:port\"), got \"mx.example\""},
        {"[relay]\ntest_server = \"::1:25\"\n",
         "relay.test_server: must be \"host:port\" (IPv6: \"[address]:port\"), got \"::1:25\""},
        {"[relay]\ntest_server = \"mx.example:70000\"\n", "relay.test_server: \"mx.example:70000\" has a port outside 1 to 65535"},
        {"[relay]\ntest_server = \"mx.example:smtp\"\n", "relay.test_server: \"mx.example:smtp\" has no valid port number"},
        {"[relay]\ntest_server = \"mx_1.example:25\"\n",
         "relay.test_server: host \"mx_1.example\" is not a valid hostname: it may only contain letters, digits, '-' and '.'"},
        {"[relay]\ntest_recipient = \"operator\"\n", "relay.test_recipient: must look like local@domain, got \"operator\""},
        {"[relay]\ntest_recipient = \"@example.com\"\n", "relay.test_recipient: must look like local@domain, got \"@example.com\""},
        {"[relay]\ntest_recipient = \"me@\"\n", "relay.test_recipient: must look like local@domain, got \"me@\""},
        {"[relay]\ntest_recipient = \"a b@example.com\"\n",
         "relay.test_recipient: must look like local@domain, got \"a b@example.com\""},
        {"[relay]\nforce_ipv4_domains = [\"gmail..com\"]\n", "relay.force_ipv4_domains: \"gmail..com\" is not a domain name"},
    };
    for (const auto& c : cases) EXPECT_EQ(error_of(c.text).what(), "test.toml:2: " + c.what) << c.text;
    // Good shapes pass.
    EXPECT_NO_THROW(apply_toml(settings{}, "[relay]\ntest_server = \"127.0.0.1:2525\"\ntest_recipient = \"a.b+c@x.example\"\n", "t"));
    EXPECT_NO_THROW(apply_toml(settings{}, "[relay]\ntest_server = \"localhost:25\"\n", "t"));
}

TEST(config_errors, array_element_errors_name_the_element_line) {
    const auto error = error_of("[identity]\nipv4 = [\n  \"192.0.2.1\",\n  \"nope\",\n]\n");
    EXPECT_EQ(error.line(), 4u);
    EXPECT_EQ(error.key(), "identity.ipv4");
}

TEST(config_errors, test_mode_needs_server_and_recipient) {
    EXPECT_STREQ(error_of("[relay]\n\ntest_mode = true\ntest_recipient = \"me@example.org\"\n").what(),
                 "test.toml:3: relay.test_mode: test mode needs relay.test_server (\"host:port\") to deliver to");
    EXPECT_STREQ(error_of("[relay]\ntest_mode = true\ntest_server = \"127.0.0.1:2525\"\n").what(),
                 "test.toml:2: relay.test_mode: test mode needs relay.test_recipient (the operator's address)");
    EXPECT_NO_THROW(apply_toml(settings{}, "[relay]\ntest_mode = true\ntest_server = \"127.0.0.1:2525\"\n"
                                           "test_recipient = \"me@example.org\"\n", "t"));
}

TEST(config_errors, retry_base_must_not_exceed_max) {
    EXPECT_STREQ(error_of("[relay]\nretry_base_seconds = 600\nretry_max_seconds = 60\n").what(),
                 "test.toml:2: relay.retry_base_seconds: relay.retry_base_seconds 600 is greater than "
                 "relay.retry_max_seconds 60");
    temp_dir dir;
    overrides cli;
    cli.config_file = dir.write("r.toml", "[relay]\nretry_max_seconds = 100\n");  // below the default base 300
    try {
        load(cli);
        FAIL() << "no error";
    } catch (const config_error& error) {
        EXPECT_EQ(error.file(), cli.config_file->string());
        EXPECT_EQ(error.line(), 2u);
        EXPECT_EQ(error.key(), "relay.retry_max_seconds");
    }
}

TEST(config_errors, discover_needs_urls) {
    EXPECT_STREQ(error_of("[identity]\ndiscover = true\ndiscover_urls = []\n").what(),
                 "test.toml:2: identity.discover: is true but identity.discover_urls is empty: list at least one URL");
}

TEST(config_load, test_mode_from_the_command_line) {
    overrides cli;
    cli.test_mode = true;
    try {
        load(cli);
        FAIL() << "no error";
    } catch (const config_error& error) {
        EXPECT_STREQ(error.what(),
                     "<command line>: --test-mode: test mode needs relay.test_server (\"host:port\") to deliver to");
    }
    temp_dir dir;
    cli.config_file = dir.write("r.toml", "[relay]\ntest_server = \"[::1]:2525\"\ntest_recipient = \"op@example.org\"\n");
    const settings s = load(cli);
    EXPECT_TRUE(s.relay.test_mode);
    EXPECT_EQ(s.config_file, *cli.config_file);
    cli.test_mode.reset();
    EXPECT_FALSE(load(cli).relay.test_mode);
}

TEST(config_load, rules_file_resolution) {
    temp_dir dir;
    overrides cli;
    // No config file: the embedded rules.
    EXPECT_TRUE(load(cli).rules.resolved_file.empty());
    // A config file without rules.toml beside it: the embedded rules.
    cli.config_file = dir.write("relaybait.toml", "hostname = \"a.example\"\n");
    settings s = load(cli);
    EXPECT_EQ(s.config_file, dir.path() / "relaybait.toml");
    EXPECT_TRUE(s.rules.resolved_file.empty());
    // rules.toml beside the config file is found.
    const fs::path sibling = dir.write("rules.toml", "# rules\n");
    EXPECT_EQ(load(cli).rules.resolved_file, sibling);
    // An explicit file wins over the sibling.
    const fs::path other = dir.write("other-rules.toml", "# rules\n");
    cli.config_file = dir.write("relaybait.toml", "[rules]\nfile = " + std::string("\"") + other.string() + "\"\n");
    s = load(cli);
    EXPECT_EQ(s.rules.file, other);
    EXPECT_EQ(s.rules.resolved_file, other);
    // The resolution is shown as a comment by `config show`, and that still reads back.
    EXPECT_NE(to_toml(s).find("# in use: "), std::string::npos);
    EXPECT_EQ(apply_toml(settings{}, to_toml(s), "shown").rules.file, other);
}

TEST(config_load, explicit_rules_file_must_exist) {
    temp_dir dir;
    overrides cli;
    const fs::path missing = dir.path() / "missing-rules.toml";
    dir.write("rules.toml", "# a sibling does not rescue a wrong explicit path\n");
    cli.config_file = dir.write("relaybait.toml", "\n[rules]\nfile = \"" + missing.string() + "\"\n");
    try {
        load(cli);
        FAIL() << "no error";
    } catch (const config_error& error) {
        EXPECT_EQ(error.file(), cli.config_file->string());
        EXPECT_EQ(error.line(), 3u);
        EXPECT_EQ(error.key(), "rules.file");
        EXPECT_EQ(error.problem(), "\"" + missing.string() + "\" does not exist");
    }
    cli.config_file = dir.write("relaybait.toml", "[rules]\nfile = \"" + dir.path().string() + "\"\n");
    try {
        load(cli);
        FAIL() << "no error";
    } catch (const config_error& error) {
        EXPECT_EQ(error.key(), "rules.file");
        EXPECT_NE(error.problem().find("is a directory"), std::string::npos) << error.what();
    }
}

// Reading a FIFO blocks until a writer comes, a device such as /dev/zero never ends: an explicit
// rules.file must be a regular file (or a link to one).
TEST(config_load, explicit_rules_file_must_be_a_regular_file) {
    temp_dir dir;
    overrides cli;
    const fs::path fifo = dir.path() / "rules.fifo";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    for (const fs::path& special : {fifo, fs::path("/dev/zero")}) {
        cli.config_file = dir.write("relaybait.toml", "[rules]\nfile = \"" + special.string() + "\"\n");
        try {
            load(cli);
            FAIL() << "no error for " << special;
        } catch (const config_error& error) {
            EXPECT_EQ(error.key(), "rules.file");
            EXPECT_EQ(error.problem(),
                      "\"" + special.string() + "\" is not a regular file (a FIFO, socket or device is not read)");
        }
    }
    // A symbolic link to a regular file is a regular file.
    const fs::path real = dir.write("real-rules.toml", "# rules\n");
    fs::create_symlink(real, dir.path() / "linked-rules.toml");
    cli.config_file = dir.write("relaybait.toml", "[rules]\nfile = \"" + (dir.path() / "linked-rules.toml").string() + "\"\n");
    EXPECT_EQ(load(cli).rules.resolved_file, dir.path() / "linked-rules.toml");
}

}  // namespace
}  // namespace relaybait::config
