#pragma once
// SHA-256 as lower-case hex (OpenSSL EVP): the hash of every stored message (messages.sha256),
// checked again at start-up after a crash, and the relay's hash of what it sends. One
// implementation, so the writer, the check and the relay cannot disagree on a digest.
#include <memory>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header

namespace relaybait::store {

// Streaming: the bytes may arrive in any pieces; the digest equals sha256_hex of them joined.
// Owns its OpenSSL context (freed on every path, exceptions included).
class sha256 {
public:
    sha256();  // throws std::runtime_error when OpenSSL cannot provide SHA-256
    ~sha256();
    sha256(const sha256&) = delete;
    sha256& operator=(const sha256&) = delete;

    // Never throws (it runs between writes of a file); a failure is reported by hex_digest.
    void update(std::string_view bytes) noexcept;
    // Ends the hash: 64 lower-case hex digits. Call once. Throws std::runtime_error on failure.
    std::string hex_digest();

private:
    struct context_free {
        void operator()(evp_md_ctx_st* context) const noexcept;
    };
    std::unique_ptr<evp_md_ctx_st, context_free> context_;
    bool usable_ = true;  // false after a failed update, and once the digest is read
};

// One-shot: the lower-case hex SHA-256 of `bytes`. Throws std::runtime_error on failure.
std::string sha256_hex(std::string_view bytes);

}  // namespace relaybait::store
