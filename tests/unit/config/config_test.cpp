#include "config/config.hpp"

#include <gtest/gtest.h>

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
    EXPECT_EQ(loaded.data_dir, "relaybait-data");
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

}  // namespace
}  // namespace relaybait::config
