#pragma once
// Running `relaybait ...` in-process with captured output, and temporary directories.
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.hpp"

namespace relaybait::cli::testing {

struct result {
    int code = -1;
    std::string out;
    std::string err;
};

// `input` is what the operator types (answers to confirmations).
inline result run(const std::vector<std::string>& args, serve_function serve = {}, const std::string& input = {}) {
    std::ostringstream out, err;
    std::istringstream in(input);
    if (!serve) serve = [](const config::settings&) { return 0; };
    result r;
    r.code = run_app(args, console{out, err, in}, std::move(serve));
    r.out = out.str();
    r.err = err.str();
    return r;
}

inline result run_with_input(const std::vector<std::string>& args, const std::string& input) {
    return run(args, {}, input);
}

class temp_dir {
public:
    temp_dir() {
        std::random_device random;
        path_ = std::filesystem::temp_directory_path() / ("cli-test-" + std::to_string(random()));
        std::filesystem::create_directories(path_);
    }
    ~temp_dir() { std::filesystem::remove_all(path_); }
    const std::filesystem::path& path() const { return path_; }
    std::string str() const { return path_.string(); }
    std::filesystem::path write(const std::string& name, const std::string& text) const {
        std::filesystem::create_directories((path_ / name).parent_path());
        std::ofstream(path_ / name, std::ios::binary) << text;
        return path_ / name;
    }

private:
    std::filesystem::path path_;
};

}  // namespace relaybait::cli::testing
