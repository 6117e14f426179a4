#include "config/config.hpp"

namespace relaybait::config {
namespace {

std::string format_error(const std::string& file, std::size_t line, std::size_t column,
                         const std::string& key, const std::string& problem) {
    std::string text = file;
    if (line != 0) {
        text += ':' + std::to_string(line);
        if (column != 0) text += ':' + std::to_string(column);
    }
    if (!key.empty()) text += ": " + key;
    return text + ": " + problem;
}

}  // namespace

config_error::config_error(std::string file, std::size_t line, std::string key, std::string problem)
    : std::runtime_error(format_error(file, line, 0, key, problem)),
      file_(std::move(file)),
      line_(line),
      key_(std::move(key)),
      problem_(std::move(problem)) {}

config_error::config_error(std::string file, std::size_t line, std::size_t column, std::string problem)
    : std::runtime_error(format_error(file, line, column, {}, problem)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      problem_(std::move(problem)) {}

}  // namespace relaybait::config
