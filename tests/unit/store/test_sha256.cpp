#include "store/sha256.hpp"

#include <gtest/gtest.h>

#include <string>

using relaybait::store::sha256;
using relaybait::store::sha256_hex;

namespace {

// FIPS 180-2 test vectors.
constexpr const char* empty_digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr const char* abc_digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

}  // namespace

TEST(Sha256, OneShotKnownValuesInLowerCaseHex) {
    EXPECT_EQ(sha256_hex(""), empty_digest);
    EXPECT_EQ(sha256_hex("abc"), abc_digest);
}

TEST(Sha256, StreamedKnownValues) {
    sha256 nothing;
    EXPECT_EQ(nothing.hex_digest(), empty_digest);
    sha256 abc;
    abc.update("a");
    abc.update("");
    abc.update("bc");
    EXPECT_EQ(abc.hex_digest(), abc_digest);
}

// The writer hashes a message in the pieces it arrives in; the crash check and the relay hash
// it whole: both must give the same digest, whatever the cut.
TEST(Sha256, StreamedInPiecesEqualsOneShot) {
    std::string message;
    for (int i = 0; i < 10'000; ++i) message += static_cast<char>(i * 31 % 256);
    for (std::size_t piece : {1u, 7u, 64u, 65u, 4096u, 100'000u}) {
        sha256 streamed;
        for (std::size_t at = 0; at < message.size(); at += piece)
            streamed.update(std::string_view(message).substr(at, piece));
        EXPECT_EQ(streamed.hex_digest(), sha256_hex(message)) << "pieces of " << piece;
    }
}

TEST(Sha256, TheDigestIsReadOnce) {
    sha256 hash;
    hash.update("abc");
    EXPECT_EQ(hash.hex_digest(), abc_digest);
    EXPECT_THROW(hash.hex_digest(), std::runtime_error);
}
