#pragma once
// The command groups of `relaybait` and what they share. app.cpp wires the real process
// (std::cout, net::serve); tests call run_app() with their own streams and serve function.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <functional>
#include <istream>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "net/server.hpp"

namespace relaybait::cli {

struct console {
    std::ostream& out;
    std::ostream& err;
    std::istream& in;  // the operator's answers to confirmations ("Apply to 3 messages? [y/N]")
    bool out_is_terminal = false;  // `out` is a terminal (isatty): raw attacker bytes are refused
};

using serve_function = std::function<int(const config::settings&)>;

// The command chosen on the command line, run once parsing succeeded. Returns the exit code.
using command_runner = std::function<int()>;

// Exit codes (DESIGN.md): 0 ok, 1 runtime failure, 2 bad usage or configuration.
inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 2;

// A runtime failure the operator can act on (missing data directory, unknown id): message, exit 1.
class command_failure : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// `args` without the program name.
int run_app(const std::vector<std::string>& args, console io, serve_function serve);

void add_serve_commands(CLI::App& app, command_runner& selected, console io, serve_function serve);  // serve, config
void add_message_commands(CLI::App& app, command_runner& selected, console io);
void add_session_commands(CLI::App& app, command_runner& selected, console io);
void add_credential_commands(CLI::App& app, command_runner& selected, console io);
void add_rules_commands(CLI::App& app, command_runner& selected, console io);  // rules check|test|apply|reload
void add_relay_commands(CLI::App& app, command_runner& selected, console io);  // relay pause|resume|status|ID, relays list
void add_stats_command(CLI::App& app, command_runner& selected, console io);

}  // namespace relaybait::cli
