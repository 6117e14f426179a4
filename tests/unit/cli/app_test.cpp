#include <gtest/gtest.h>

#include "cli_test_support.hpp"

namespace relaybait::cli {
namespace {

using testing::run;
using testing::temp_dir;

struct serve_spy {
    int calls = 0;
    config::settings settings;
    serve_function function() {
        return [this](const config::settings& s) {
            ++calls;
            settings = s;
            return 0;
        };
    }
};

TEST(cli_serve, defaults_without_a_file) {
    serve_spy spy;
    const auto r = run({"serve"}, spy.function());
    EXPECT_EQ(r.code, 0) << r.err;
    ASSERT_EQ(spy.calls, 1);
    EXPECT_EQ(spy.settings.hostname, "mail.example.com");
    EXPECT_FALSE(spy.settings.relay.test_mode);
}

TEST(cli_serve, flags_override_the_file) {
    temp_dir dir;
    const auto file = dir.write("r.toml", "hostname = \"file.example.net\"\nport_offset = 1000\ndata_dir = \"/x\"\n"
                                          "[relay]\ntest_server = \"127.0.0.1:2525\"\ntest_recipient = \"ops@example.net\"\n");
    serve_spy spy;
    auto r = run({"serve", "--config", file.string()}, spy.function());
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(spy.settings.hostname, "file.example.net");
    EXPECT_EQ(spy.settings.port_offset, 1000);

    r = run({"serve", "--config", file.string(), "--hostname", "cli.example.net", "--port-offset", "10000", "--bind",
             "127.0.0.1", "--data-dir", dir.str(), "--test-mode"},
            spy.function());
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(spy.settings.hostname, "cli.example.net");
    EXPECT_EQ(spy.settings.port_offset, 10000);
    EXPECT_EQ(spy.settings.bind, std::vector<std::string>{"127.0.0.1"});
    EXPECT_EQ(spy.settings.data_dir, dir.path());
    EXPECT_TRUE(spy.settings.relay.test_mode);
}

TEST(cli_serve, config_error_exits_2_with_file_line_key) {
    temp_dir dir;
    const auto file = dir.write("r.toml", "\n[limits]\nbogus = 1\n");
    serve_spy spy;
    const auto r = run({"serve", "--config", file.string()}, spy.function());
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(spy.calls, 0);
    EXPECT_EQ(r.err, "relaybait: " + file.string() + ":3: limits.bogus: unknown key\n");
}

TEST(cli_serve, serve_exit_code_and_failures_pass_through) {
    EXPECT_EQ(run({"serve"}, [](const config::settings&) { return 1; }).code, 1);
    const auto r = run({"serve"}, [](const config::settings&) -> int {
        throw std::runtime_error("port 25 in use");
    });
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "relaybait: port 25 in use\n");
    const auto bad_cert = run({"serve"}, [](const config::settings&) -> int {
        throw config::config_error("c.pem", 0, "tls.certificate", "cannot load the certificate");
    });
    EXPECT_EQ(bad_cert.code, 2);
}

TEST(cli_usage, bad_usage_exits_2) {
    EXPECT_EQ(run({}).code, 2);
    EXPECT_EQ(run({"frobnicate"}).code, 2);
    EXPECT_EQ(run({"serve", "--port-offset", "many"}).code, 2);
    EXPECT_EQ(run({"serve", "--bind", "localhost"}).code, 2);  // config::load rejects it
    EXPECT_EQ(run({"messages"}).code, 2);
    EXPECT_EQ(run({"messages", "show"}).code, 2);               // ID required
    EXPECT_EQ(run({"messages", "show", "1", "--raw", "--json"}).code, 2);
    EXPECT_EQ(run({"messages", "list", "--limit", "0"}).code, 2);
    const auto help = run({"--help"});
    EXPECT_EQ(help.code, 0);
    EXPECT_NE(help.out.find("serve"), std::string::npos);
}

TEST(cli_config, check_and_show) {
    temp_dir dir;
    const auto good = dir.write("good.toml", "hostname = \"mx.example.org\"\n");
    auto r = run({"config", "check", "--config", good.string()});
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.out, good.string() + ": ok\n");
    EXPECT_EQ(run({"config", "check"}).code, 0);

    const auto bad = dir.write("bad.toml", "hostname = \"mx.example.org\"\n[auth]\npolicy = \"maybe\"\n");
    r = run({"config", "check", "--config", bad.string()});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find(bad.string() + ":3: auth.policy: must be one of"), std::string::npos) << r.err;

    r = run({"config", "show", "--config", good.string(), "--port-offset", "7"});
    EXPECT_EQ(r.code, 0);
    EXPECT_NE(r.out.find("hostname = \"mx.example.org\"\n"), std::string::npos);
    EXPECT_NE(r.out.find("port_offset = 7\n"), std::string::npos);
    // What show prints is itself a valid configuration file.
    const auto shown = dir.write("shown.toml", r.out);
    EXPECT_EQ(run({"config", "check", "--config", shown.string()}).code, 0);
}

TEST(cli_read, missing_data_dir_exits_1_with_a_clear_message) {
    temp_dir dir;
    const std::string missing = (dir.path() / "nope").string();
    for (const auto& args : std::vector<std::vector<std::string>>{{"messages", "list", "--data-dir", missing},
                                                                  {"sessions", "show", "abc", "--data-dir", missing},
                                                                  {"credentials", "list", "--data-dir", missing}}) {
        const auto r = run(args);
        EXPECT_EQ(r.code, 1);
        EXPECT_EQ(r.err, "relaybait: no data directory at " + missing + " (give --data-dir)\n");
    }
    const auto r = run({"messages", "list", "--data-dir", dir.str()});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("no database at " + (dir.path() / "relaybait.db").string()), std::string::npos);
}

}  // namespace
}  // namespace relaybait::cli
