#pragma once
// The command line: `relaybait serve`, the operator's read commands (messages list|show,
// sessions list|show, credentials list, relays list, stats), the rules commands
// (rules check|test|apply|reload) and the relay controls (relay pause|resume|status|ID).
// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
namespace relaybait::cli {
int run(int argc, char** argv);
}
