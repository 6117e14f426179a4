#pragma once
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace relaybait::test {

// A fresh directory under /tmp (or `parent`), removed with everything in it.
struct temp_dir {
    std::filesystem::path path;
    explicit temp_dir(const std::filesystem::path& parent = std::filesystem::temp_directory_path()) {
        std::string tmpl = (parent / "relaybait-store-XXXXXX").string();
        path = ::mkdtemp(tmpl.data());
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

}  // namespace relaybait::test
