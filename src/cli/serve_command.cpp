// `relaybait serve` and `relaybait config check|show`.
#include <spdlog/spdlog.h>

#include <memory>

#include "cli/commands.hpp"

namespace relaybait::cli {
namespace {

// The flags that override the configuration file; only those given count.
struct override_options {
    std::string config_file, data_dir, bind, hostname;
    std::int32_t port_offset = 0;
    CLI::Option* config_flag = nullptr;
    CLI::Option* data_dir_flag = nullptr;
    CLI::Option* bind_flag = nullptr;
    CLI::Option* hostname_flag = nullptr;
    CLI::Option* port_offset_flag = nullptr;

    config::overrides build() const {
        config::overrides cli;
        if (config_flag->count() != 0) cli.config_file = config_file;
        if (data_dir_flag && data_dir_flag->count() != 0) cli.data_dir = data_dir;
        if (bind_flag && bind_flag->count() != 0) cli.bind = bind;
        if (hostname_flag && hostname_flag->count() != 0) cli.hostname = hostname;
        if (port_offset_flag && port_offset_flag->count() != 0) cli.port_offset = port_offset;
        return cli;
    }
};

void add_config_flag(CLI::App& command, override_options& options) {
    options.config_flag = command.add_option("--config", options.config_file, "TOML configuration file");
}

void add_override_flags(CLI::App& command, override_options& options) {
    add_config_flag(command, options);
    options.data_dir_flag = command.add_option("--data-dir", options.data_dir, "data directory (overrides data_dir)");
    options.bind_flag = command.add_option("--bind", options.bind, "listen on this address only (overrides bind)");
    options.port_offset_flag =
        command.add_option("--port-offset", options.port_offset, "added to every listener port (overrides port_offset)");
    options.hostname_flag = command.add_option("--hostname", options.hostname, "the server's name (overrides hostname)");
}

std::string origin_of(const config::overrides& cli) {
    return cli.config_file ? cli.config_file->string() : std::string(config::builtin_origin);
}

int serve_command(const override_options& options, bool test_mode, const serve_function& serve) {
    config::overrides cli = options.build();
    if (test_mode) cli.test_mode = true;  // relay.test_mode, named "--test-mode" in errors
    const config::settings settings = config::load(cli);
    spdlog::set_level(spdlog::level::from_str(settings.log_level));
    return serve(settings);
}

int check_command(const override_options& options, console io) {
    const config::overrides cli = options.build();
    config::load(cli);
    io.out << origin_of(cli) << ": ok\n";
    return exit_ok;
}

int show_command(const override_options& options, console io) {
    io.out << config::to_toml(config::load(options.build()));
    return exit_ok;
}

void add_serve(CLI::App& app, command_runner& selected, serve_function serve) {
    auto* command = app.add_subcommand("serve", "run the honeypot until SIGINT/SIGTERM");
    auto options = std::make_shared<override_options>();
    auto test_mode = std::make_shared<bool>(false);
    add_override_flags(*command, *options);
    command->add_flag("--test-mode", *test_mode, "send every relay to the operator, never to the recipient");
    command->callback([&selected, options, test_mode, serve = std::move(serve)] {
        selected = [options, test_mode, serve] { return serve_command(*options, *test_mode, serve); };
    });
}

void add_config(CLI::App& app, command_runner& selected, console io) {
    auto* group = app.add_subcommand("config", "check or show the configuration");
    group->require_subcommand(1);
    auto check_options = std::make_shared<override_options>();
    auto* check = group->add_subcommand("check", "validate the configuration (exit 0 when valid, 2 when not)");
    add_config_flag(*check, *check_options);
    check->callback([&selected, check_options, io] { selected = [check_options, io] { return check_command(*check_options, io); }; });
    auto show_options = std::make_shared<override_options>();
    auto* show = group->add_subcommand("show", "print the effective configuration as TOML");
    add_override_flags(*show, *show_options);
    show->callback([&selected, show_options, io] { selected = [show_options, io] { return show_command(*show_options, io); }; });
}

}  // namespace

void add_serve_commands(CLI::App& app, command_runner& selected, console io, serve_function serve) {
    add_serve(app, selected, std::move(serve));
    add_config(app, selected, io);
}

}  // namespace relaybait::cli
