#include "config/config.hpp"

namespace relaybait::config {

std::string_view default_config_text() {
    static constexpr std::string_view text =
#include "default_config.inc"
        ;
    return text;
}

}  // namespace relaybait::config
