#pragma once
// How a TOML value's type is named in error messages ("expected a string, got an integer"),
// shared by the configuration and the rules file so both read alike.
#include <toml++/toml.h>

#include <string_view>

namespace relaybait::config {

inline std::string_view toml_type_name(toml::node_type type) {
    switch (type) {
        case toml::node_type::table: return "a table";
        case toml::node_type::array: return "an array";
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a floating-point number";
        case toml::node_type::boolean: return "a boolean";
        case toml::node_type::date: return "a date";
        case toml::node_type::time: return "a time";
        case toml::node_type::date_time: return "a date-time";
        case toml::node_type::none: break;
    }
    return "nothing";
}

}  // namespace relaybait::config
