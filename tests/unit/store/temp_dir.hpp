#pragma once
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace relaybait::test {

// A fresh directory under /tmp (or `parent`), removed with everything in it. `path` is empty
// when it could not be created (callers that need it ASSERT it is not).
struct temp_dir {
    std::filesystem::path path;
    explicit temp_dir(const std::filesystem::path& parent = std::filesystem::temp_directory_path()) {
        std::string tmpl = (parent / "relaybait-store-XXXXXX").string();
        if (const char* made = ::mkdtemp(tmpl.data())) path = made;
    }
    ~temp_dir() {
        if (path.empty()) return;
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
};

}  // namespace relaybait::test
