// The real process: std::cout/std::cerr and the real network server.
#include "cli/app.hpp"

#include <unistd.h>

#include <iostream>

#include "cli/commands.hpp"

namespace relaybait::cli {

int run(int argc, char** argv) {
    std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    const int code = run_app(args, console{std::cout, std::cerr, std::cin, ::isatty(STDOUT_FILENO) == 1}, &net::serve);
    std::cout.flush();
    return code;
}

}  // namespace relaybait::cli
