#include "store/sha256.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace relaybait::store {
namespace {

std::string lower_hex(const unsigned char* bytes, std::size_t count) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(count * 2, '0');
    for (std::size_t i = 0; i < count; ++i) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    return out;
}

}  // namespace

void sha256::context_free::operator()(evp_md_ctx_st* context) const noexcept { EVP_MD_CTX_free(context); }

sha256::sha256() : context_(EVP_MD_CTX_new()) {
    if (!context_ || EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("SHA-256 unavailable");
}

sha256::~sha256() = default;

void sha256::update(std::string_view bytes) noexcept {
    if (usable_ && EVP_DigestUpdate(context_.get(), bytes.data(), bytes.size()) != 1) usable_ = false;
}

std::string sha256::hex_digest() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    const bool ok = usable_ && EVP_DigestFinal_ex(context_.get(), digest, &length) == 1;
    usable_ = false;  // a finished context can be neither fed nor finished again
    if (!ok) throw std::runtime_error("SHA-256 failed");
    return lower_hex(digest, length);
}

std::string sha256_hex(std::string_view bytes) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("SHA-256 failed");
    return lower_hex(digest, length);
}

}  // namespace relaybait::store
