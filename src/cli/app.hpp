#pragma once
// The command line: `relaybait serve`, and the operator's read commands
// (messages list|show, sessions list|show, credentials list).
// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
namespace relaybait::cli {
int run(int argc, char** argv);
}
