#pragma once
// What the rules, relay and stats commands share: the configuration (--config FILE, with
// --data-dir overriding data_dir), option checks for --since and --folder, and the operator's
// confirmation on the console.
#include <CLI/CLI.hpp>

#include <stdexcept>
#include <string>

#include "cli/commands.hpp"
#include "config/config.hpp"

namespace relaybait::cli {

// A usage problem found once the command runs (a rule that does not exist, a rule of another
// hook): message on stderr, exit 2.
class usage_failure : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct settings_options {
    std::string config_file;
    std::string data_dir;
    CLI::Option* config_flag = nullptr;
    CLI::Option* data_dir_flag = nullptr;
};

// --config FILE and --data-dir DIR.
void add_settings_options(CLI::App& command, settings_options& options);

// config::load with the file and the data directory given (embedded defaults otherwise).
// Throws config::config_error (exit 2).
config::settings load_settings(const settings_options& options);

// --since: an ISO 8601 date or date-time prefix ("2026-11-23", "2026-11-23T18:00",
// "2026-11-23 18:00:00"), compared with received_at. A space before the time becomes 'T'.
// Returns the normalised form; throws CLI::ValidationError otherwise (exit 2).
std::string normalise_since(const std::string& text);
// CLI11 check for --since.
CLI::Validator since_validator();

// --folder (and a rule's folder in `rules apply`): store::maildir_folder_for, "" or INBOX (any
// case) is the inbox, "Probes" and ".Probes" are the same Maildir++ folder. Returns the stored
// form ("" or ".Name"); throws CLI::ValidationError for an invalid name.
std::string normalise_folder(const std::string& text);
CLI::Validator folder_validator();

// Prints `question` and " [y/N] " on io.out and reads one line from io.in: true only for
// "y" or "yes" (any case). End of input is a no.
bool confirm(console io, const std::string& question);

}  // namespace relaybait::cli
