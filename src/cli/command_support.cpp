#include "cli/command_support.hpp"

#include <algorithm>
#include <cctype>

#include "common/text.hpp"
#include "store/maildir.hpp"

namespace relaybait::cli {
namespace {

bool digits(const std::string& text, std::size_t from, std::size_t count) {
    if (from + count > text.size()) return false;
    return std::all_of(text.begin() + static_cast<std::ptrdiff_t>(from),
                       text.begin() + static_cast<std::ptrdiff_t>(from + count),
                       [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

void add_settings_options(CLI::App& command, settings_options& options) {
    options.config_flag = command.add_option("--config", options.config_file, "TOML configuration file");
    options.data_dir_flag = command.add_option("--data-dir", options.data_dir, "data directory (overrides data_dir)");
}

config::settings load_settings(const settings_options& options) {
    config::overrides cli;
    if (options.config_flag && options.config_flag->count() != 0) cli.config_file = options.config_file;
    if (options.data_dir_flag && options.data_dir_flag->count() != 0) cli.data_dir = options.data_dir;
    return config::load(cli);
}

std::string normalise_since(const std::string& text) {
    // YYYY-MM-DD[(T| )HH[:MM[:SS[.ffffff]]]][Z]
    std::string since = text;
    const bool date = since.size() >= 10 && digits(since, 0, 4) && since[4] == '-' && digits(since, 5, 2) &&
                      since[7] == '-' && digits(since, 8, 2);
    bool ok = date;
    if (ok && !since.empty() && since.back() == 'Z') since.pop_back();
    if (ok && since.size() > 10) {
        if (since[10] == ' ') since[10] = 'T';
        ok = since[10] == 'T' && digits(since, 11, 2);
        std::size_t pos = 13;
        for (int part = 0; ok && part < 2 && pos < since.size(); ++part, pos += 3)
            ok = since[pos] == ':' && digits(since, pos + 1, 2);
        if (ok && pos < since.size())
            ok = pos == 19 && since[19] == '.' && since.size() > 20 && digits(since, 20, since.size() - 20);
    }
    if (!ok) throw CLI::ValidationError("--since", "expected a date like 2026-11-23 or 2026-11-23T18:00, got " + text);
    return since;
}

CLI::Validator since_validator() {
    return CLI::Validator(
        [](std::string& value) {
            try {
                value = normalise_since(value);
            } catch (const CLI::ValidationError&) {
                return std::string("expected a date like 2026-11-23 or 2026-11-23T18:00");
            }
            return std::string();
        },
        "DATE");
}

std::string normalise_folder(const std::string& text) {
    auto folder = store::maildir_folder_for(text);
    if (!folder) throw CLI::ValidationError("--folder", "not a Maildir++ folder name: " + text);
    return std::move(*folder);
}

CLI::Validator folder_validator() {
    return CLI::Validator(
        [](std::string& value) {
            try {
                value = normalise_folder(value);
            } catch (const CLI::ValidationError&) {
                return std::string("not a Maildir++ folder name (inbox, Probes, .Probes, A.B)");
            }
            return std::string();
        },
        "FOLDER");
}

bool confirm(console io, const std::string& question) {
    io.out << question << " [y/N] " << std::flush;
    std::string answer;
    if (!std::getline(io.in, answer)) {
        io.out << '\n';
        return false;
    }
    while (!answer.empty() && std::isspace(static_cast<unsigned char>(answer.back()))) answer.pop_back();
    while (!answer.empty() && std::isspace(static_cast<unsigned char>(answer.front()))) answer.erase(answer.begin());
    return text::iequals(answer, "y") || text::iequals(answer, "yes");
}

}  // namespace relaybait::cli
