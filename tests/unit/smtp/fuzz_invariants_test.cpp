// Deterministic stand-in for the libFuzzer run: ~20,000 random and mutated SMTP inputs.
#include <gtest/gtest.h>

#include <random>

#include "../../fuzz/engine_fuzz_driver.hpp"
#include "test_support.hpp"

namespace relaybait::smtp {
namespace {

const char* const kSeeds[] = {
    "EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n\r\n..hi\r\n.\r\nQUIT\r\n",
    "EHLO a\r\nSTARTTLS\r\nRSET\r\nEHLO b\r\nAUTH PLAIN AHUAcA==\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\n",
    "AUTH LOGIN\r\ndQ==\r\ncA==\r\nAUTH CRAM-MD5\r\ndSAwMTIz\r\n*\r\n",
    "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 5\r\nhelloBDAT 3 LAST\r\nbyeNOOP\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "MAIL FROM:<a@b.example> SIZE=1 BODY=8BITMIME RET=FULL ENVID=x\r\nRCPT TO:<x@y.example> NOTIFY=NEVER ORCPT=rfc822;x\r\n",
    "VRFY root\r\nETRN #x.example\r\nXCLIENT A=1\r\n\x00\r\n\xff\xfe\r\n",
};

TEST(FuzzInvariants, TwentyThousandInputs) {
    std::mt19937_64 rng(20240601);
    const std::string alphabet = "\r\n.:<>@ \0AZaz09=+/-*\xff";
    int runs = 0;
    for (int i = 0; i < 20000; ++i) {
        std::string input(1, static_cast<char>(rng() & 0xFF));
        if (i % 4 == 0) {
            std::size_t len = rng() % 600;
            for (std::size_t k = 0; k < len; ++k)
                input.push_back(rng() % 3 == 0 ? static_cast<char>(rng() & 0xFF) : alphabet[rng() % alphabet.size()]);
        } else {
            std::string seed = kSeeds[rng() % std::size(kSeeds)];
            int mutations = 1 + static_cast<int>(rng() % 8);
            for (int m = 0; m < mutations && !seed.empty(); ++m) {
                std::size_t at = rng() % seed.size();
                switch (rng() % 4) {
                case 0: seed[at] = static_cast<char>(rng() & 0xFF); break;
                case 1: seed.erase(at, 1 + rng() % 5); break;
                case 2: seed.insert(at, std::string(1 + rng() % 3000, alphabet[rng() % alphabet.size()])); break;
                case 3: seed.insert(at, kSeeds[rng() % std::size(kSeeds)]); break;
                }
            }
            input += seed;
        }
        ASSERT_TRUE(fuzz::run_one(input)) << "input #" << i;
        ++runs;
    }
    EXPECT_EQ(runs, 20000);
}

TEST(FuzzInvariants, PartialLineStaysBounded) {
    // A client that never ends its line: the engine keeps at most line_length bytes.
    testing::driver d;
    for (int i = 0; i < 1000; ++i) d.send(std::string(1000, 'A'));
    EXPECT_EQ(d.send("\r\n"), "500 5.5.2 Error: command not recognized\r\n");
    for (const auto& o : d.observations) EXPECT_LE(o.text.size(), 2048u);
}

TEST(FuzzInvariants, EngineIsSmall) {
    // 10,000 idle sessions must fit in ~4 KB each: the per-session state has no big buffers.
    testing::driver d;
    d.send("EHLO client.example\r\n");
    EXPECT_LT(sizeof(engine), 64u);
}

}  // namespace
}  // namespace relaybait::smtp
