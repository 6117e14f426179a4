#pragma once
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace relaybait::test {

// A fresh directory under /tmp, removed with everything in it.
struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "relaybait-store-XXXXXX").string();
        path = ::mkdtemp(tmpl.data());
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

}  // namespace relaybait::test
