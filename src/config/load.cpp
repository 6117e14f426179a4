// Defaults, then the operator's file, then the command line.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "config/detail.hpp"

namespace relaybait::config {
namespace {

std::string read_file(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw config_error(file.string(), 0, std::string{}, std::string("cannot read the configuration file: ") + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw config_error(file.string(), 0, std::string{}, "cannot read the configuration file");
    return std::move(text).str();
}

detail::location from_command_line(std::string flag) {
    return {std::string(command_line_origin), 0, std::move(flag)};
}

void check_override(const std::string& flag, const std::string& problem) {
    if (!problem.empty()) throw config_error(std::string(command_line_origin), 0, flag, problem);
}

void apply_overrides(settings& target, const overrides& cli, detail::provenance& where) {
    if (cli.data_dir) {
        check_override("--data-dir", cli.data_dir->empty() ? "must not be empty" : "");
        target.data_dir = *cli.data_dir;
        where.set("data_dir", from_command_line("--data-dir"));
    }
    if (cli.bind) {
        check_override("--bind", detail::check_ip_address(*cli.bind));
        target.bind = {*cli.bind};
        where.set("bind", from_command_line("--bind"));
    }
    if (cli.port_offset) {
        check_override("--port-offset",
                       *cli.port_offset < -65535 || *cli.port_offset > 65535 ? "must be from -65535 to 65535" : "");
        target.port_offset = *cli.port_offset;
        where.set("port_offset", from_command_line("--port-offset"));
    }
    if (cli.hostname) {
        check_override("--hostname", detail::check_hostname(*cli.hostname));
        target.hostname = *cli.hostname;
        where.set("hostname", from_command_line("--hostname"));
    }
    if (cli.test_mode) {
        target.relay.test_mode = *cli.test_mode;
        where.set("relay.test_mode", from_command_line("--test-mode"));
    }
}

// rules.file when given (it must exist), else rules.toml beside the --config file when there
// is one, else empty: the embedded default rules.
std::filesystem::path resolve_rules_file(const settings& merged, const detail::provenance& where) {
    namespace fs = std::filesystem;
    std::error_code error;
    if (!merged.rules.file.empty()) {
        const fs::file_status status = fs::status(merged.rules.file, error);
        if (!fs::exists(status))
            where.fail("rules.file", detail::toml_quote(merged.rules.file.string()) + " does not exist" +
                                         (error && error != std::errc::no_such_file_or_directory
                                              ? " or cannot be read (" + error.message() + ")"
                                              : std::string{}));
        if (fs::is_directory(status))
            where.fail("rules.file", detail::toml_quote(merged.rules.file.string()) + " is a directory, not a rules file");
        // A FIFO would block the start and every reload, a device (/dev/zero) never ends.
        if (!fs::is_regular_file(status))
            where.fail("rules.file", detail::toml_quote(merged.rules.file.string()) +
                                         " is not a regular file (a FIFO, socket or device is not read)");
        return merged.rules.file;
    }
    if (merged.config_file.empty()) return {};
    const fs::path sibling = merged.config_file.parent_path() / "rules.toml";
    if (fs::is_regular_file(sibling, error)) return sibling;
    return {};
}

}  // namespace

std::uint16_t settings::effective_port(const listener_config& listener) const {
    const std::int64_t port = std::int64_t{listener.port} + port_offset;
    if (port < 1 || port > 65535)
        throw config_error(std::string(command_line_origin), 0, "port_offset",
                           "listeners." + listener.name + ".port + port_offset = " + std::to_string(port) +
                               " is outside 1 to 65535");
    return static_cast<std::uint16_t>(port);
}

settings apply_toml(settings base, std::string_view toml_text, const std::string& origin) {
    detail::provenance where;
    detail::apply_toml(base, toml_text, origin, where);
    detail::validate_merged(base, where);
    return base;
}

settings load(const overrides& cli) {
    settings merged;
    detail::provenance where;
    detail::apply_toml(merged, default_config_text(), std::string(builtin_origin), where);
    if (cli.config_file) detail::apply_toml(merged, read_file(*cli.config_file), cli.config_file->string(), where);
    apply_overrides(merged, cli, where);
    detail::validate_merged(merged, where);
    if (merged.sensor.empty()) merged.sensor = merged.hostname;
    // Relative to the directory relaybait was started in, resolved once: the paths the server
    // records (a queued relay's message file) must not depend on a later working directory.
    merged.data_dir = std::filesystem::absolute(merged.data_dir);
    merged.config_file = cli.config_file.value_or(std::filesystem::path{});
    merged.rules.resolved_file = resolve_rules_file(merged, where);
    return merged;
}

}  // namespace relaybait::config
