#include "relay/message.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace relaybait::relay {

namespace {
constexpr std::string_view trace_prefix = "X-Relaybait-";
}

std::string_view strip_trace_block(std::string_view stored) {
    if (!stored.starts_with("Received: from ")) return stored;
    auto next_line = [&](std::size_t from) {
        const auto lf = stored.find('\n', from);
        return lf == std::string_view::npos ? std::string_view::npos : lf + 1;
    };
    std::size_t pos = next_line(0);
    while (pos != std::string_view::npos && pos < stored.size() && stored[pos] == '\t') pos = next_line(pos);
    if (pos == std::string_view::npos || !stored.substr(pos).starts_with(trace_prefix)) return stored;
    while (pos != std::string_view::npos && stored.substr(pos).starts_with(trace_prefix)) pos = next_line(pos);
    return pos == std::string_view::npos ? stored.substr(stored.size()) : stored.substr(pos);
}

std::string sha256_hex(std::string_view bytes) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("sha256 failed");
    }
    static const char* const hex = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < length; ++i) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 15];
    }
    return out;
}

std::string header_value(std::string_view value, std::size_t max_length) {
    std::string out;
    for (unsigned char c : value) {
        if (out.size() >= max_length) break;
        out += (c < 0x20 || c == 0x7F) ? ' ' : static_cast<char>(c);
    }
    return out;
}

}  // namespace relaybait::relay
