// Parses the command line, runs the chosen command, and turns failures into exit codes.
#include "cli/command_support.hpp"
#include "cli/commands.hpp"
#include "rules/rules.hpp"

namespace relaybait::cli {
namespace {

int run_selected(const command_runner& selected, console io) {
    try {
        return selected();
    } catch (const config::config_error& error) {
        io.err << "relaybait: " << error.what() << '\n';
        return exit_usage;
    } catch (const rules::rules_error& error) {  // FILE:LINE:COL: reason
        io.err << "relaybait: " << error.what() << '\n';
        return exit_usage;
    } catch (const usage_failure& error) {
        io.err << "relaybait: " << error.what() << '\n';
        return exit_usage;
    } catch (const std::exception& error) {
        io.err << "relaybait: " << error.what() << '\n';
        return exit_failure;
    }
}

}  // namespace

int run_app(const std::vector<std::string>& args, console io, serve_function serve) {
    CLI::App app{"relaybait: an SMTP honeypot that poses as an open relay", "relaybait"};
    app.require_subcommand(1);
    command_runner selected;
    add_serve_commands(app, selected, io, std::move(serve));
    add_message_commands(app, selected, io);
    add_session_commands(app, selected, io);
    add_credential_commands(app, selected, io);
    add_rules_commands(app, selected, io);
    add_relay_commands(app, selected, io);
    add_stats_command(app, selected, io);
    try {
        std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
        app.parse(reversed);
    } catch (const CLI::ParseError& error) {
        return app.exit(error, io.out, io.err) == 0 ? exit_ok : exit_usage;
    }
    if (!selected) {
        io.err << app.help();
        return exit_usage;
    }
    return run_selected(selected, io);
}

}  // namespace relaybait::cli
