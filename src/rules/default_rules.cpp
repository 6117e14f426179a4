#include "rules/rules.hpp"

namespace relaybait::rules {

std::string_view default_rules_text() {
    static constexpr std::string_view text =
#include "default_rules.inc"
        ;
    return text;
}

}  // namespace relaybait::rules
