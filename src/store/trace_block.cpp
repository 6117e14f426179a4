#include "store/trace_block.hpp"

#include <ctime>

#include <algorithm>

namespace relaybait::store {

std::string_view strip_trace_block(std::string_view stored) {
    if (!stored.starts_with("Received: from ")) return stored;
    auto next_line = [&](std::size_t from) {
        const auto end = stored.find("\r\n", from);
        return end == std::string_view::npos ? std::string_view::npos : end + 2;
    };
    std::size_t pos = next_line(0);
    while (pos != std::string_view::npos && pos < stored.size() && stored[pos] == '\t') pos = next_line(pos);
    if (pos == std::string_view::npos || !stored.substr(pos).starts_with(trace_header_prefix)) return stored;
    while (pos != std::string_view::npos && stored.substr(pos).starts_with(trace_header_prefix)) pos = next_line(pos);
    return pos == std::string_view::npos ? stored : stored.substr(pos);
}

std::string header_safe(std::string_view value, std::size_t max_length) {
    std::string safe;
    safe.reserve(std::min(value.size(), max_length));
    for (unsigned char c : value) {
        if (safe.size() >= max_length) break;
        safe += (c < 0x20 || c == 0x7F) ? '?' : static_cast<char>(c);
    }
    return safe;
}

std::string rfc5322_date(std::chrono::system_clock::time_point when) {
    const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[64];
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S +0000 (UTC)", &utc);
    return text;
}

}  // namespace relaybait::store
