// Replays every captured dialogue of the real Postfix 3.7.11 (tests/transcripts/postfix-3.7, and
// the differential "-extra" set recorded by tests/integration/capture_dialogues.py) through the
// engine and compares replies byte for byte (queue ids and the CRAM-MD5 challenge normalised).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>
#include <regex>
#include <sstream>

#include "smtp/syntax.hpp"
#include "test_support.hpp"

namespace relaybait::smtp {
namespace {

std::string latin1_to_bytes(std::string_view utf8) {
    // JSON strings hold latin-1 decoded bytes: every code point is < 256.
    std::string out;
    for (std::size_t i = 0; i < utf8.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(utf8[i]);
        if (c < 0x80) {
            out.push_back(static_cast<char>(c));
        } else {
            unsigned char d = static_cast<unsigned char>(utf8[++i]);
            out.push_back(static_cast<char>(((c & 0x1F) << 6) | (d & 0x3F)));
        }
    }
    return out;
}

std::string normalise(std::string text) {
    static const std::regex queued("queued as [0-9A-Za-z]+");
    text = std::regex_replace(text, queued, "queued as QUEUEID");
    // CRAM-MD5 challenge: "334 base64(<digits.digits@host>)"
    static const std::regex challenge("334 ([A-Za-z0-9+/=]{16,})\r\n");
    std::smatch m;
    std::string out;
    auto begin = text.cbegin();
    while (std::regex_search(begin, text.cend(), m, challenge)) {
        out.append(begin, m[0].first);
        auto decoded = syntax::base64_decode(m[1].str());
        static const std::regex cram("<[0-9]+\\.[0-9]+@[^>]+>");
        if (decoded && std::regex_match(*decoded, cram))
            out += "334 <CRAM-CHALLENGE>\r\n";
        else
            out += m[0].str();
        begin = m[0].second;
    }
    out.append(begin, text.cend());
    return out;
}

struct dialogue_result {
    bool passed = true;
    std::string failure;
};

dialogue_result replay(listener_kind kind, const boost::json::array& steps, bool bytewise) {
    engine_config cfg;
    cfg.auth.policy = auth_policy::mode::accept_listed;
    cfg.auth.accepted_pairs = {{"testuser", "S3cretPass!"}};
    testing::driver d(kind, cfg);
    dialogue_result result;
    auto fail = [&](std::size_t i, const std::string& sent, const std::string& want, const std::string& got) {
        if (!result.passed) return;
        result.passed = false;
        std::ostringstream os;
        os << "step " << i << " sent " << boost::json::serialize(boost::json::value(sent)) << "\n  want "
           << boost::json::serialize(boost::json::value(want)) << "\n  got  "
           << boost::json::serialize(boost::json::value(got));
        result.failure = os.str();
    };
    bool banner_sent = false;
    // Replies the engine produced earlier than the capture shows them: the capturing client read
    // one reply per command, so a reply that Postfix wrote in the same burst can appear under the
    // next step. The byte stream must still match exactly, in order.
    std::string carry;
    auto compare = [&](std::size_t i, const std::string& sent, const std::string& expected, const std::string& got) {
        if (got == expected) {
            carry.clear();
        } else if (!expected.empty() && got.rfind(expected, 0) == 0) {
            carry = got.substr(expected.size());
        } else {
            fail(i, sent, expected, got);
        }
    };
    for (std::size_t i = 0; i < steps.size() && result.passed; ++i) {
        const auto& pair = steps[i].as_array();
        std::string sent = latin1_to_bytes(pair[0].as_string());
        std::string want = latin1_to_bytes(pair[1].as_string());
        // A reply that arrived later belongs to the same exchange.
        while (i + 1 < steps.size() && steps[i + 1].as_array()[0].as_string() == "<<late-data>>") {
            want += latin1_to_bytes(steps[i + 1].as_array()[1].as_string());
            ++i;
        }
        if (sent.empty() && !banner_sent) {
            banner_sent = true;
            std::string got = d.eng->greeting();
            if (got != want) fail(i, sent, want, got);
            continue;
        }
        if (sent == "<<tls-handshake>>") {
            if (!banner_sent) continue;  // smtps: TLS before the banner
            if (want.rfind("ok ", 0) == 0) {
                if (!d.tls_pending) fail(i, sent, want, "(engine did not request start_tls)");
                d.start_tls();
            } else if (!d.tls_pending) {
                // A TLS ClientHello sent on a session that did not ask for it: the client gave up.
                break;
            }
            continue;
        }
        if (sent == "<<read-after-tls>>") {
            if (want != "<<nothing>>") fail(i, sent, want, "(unsupported)");
            continue;
        }
        if (sent.rfind("<<wait", 0) == 0) continue;
        if (sent == "<<eof-check>>") {
            if (!carry.empty()) fail(i, sent, "", carry);
            bool closed = d.closed || d.tls_pending;
            std::string got = closed ? "<<closed-by-server>>" : "<<open>>";
            if (got != want) fail(i, sent, want, got);
            continue;
        }
        if (d.closed || d.tls_pending) {
            // The server is gone (or wants a TLS handshake): the client sees EOF/reset.
            if (want.rfind("<<", 0) != 0) {
                compare(i, sent, normalise(want), carry);
                if (!carry.empty()) fail(i, sent, want, carry);
            } else if (!carry.empty()) {
                fail(i, sent, want, carry);
            }
            continue;
        }
        std::string got = carry + normalise(bytewise ? d.send_bytewise(sent) : d.send(sent));
        std::string expected = want;
        if (want == "<<timeout>>" || want == "<<nothing>>") expected.clear();
        expected = normalise(expected);
        bool next_is_failed_tls = i + 1 < steps.size() &&
                                  steps[i + 1].as_array()[0].as_string() == "<<tls-handshake>>" &&
                                  steps[i + 1].as_array()[1].as_string().starts_with("error");
        if (next_is_failed_tls) {
            // The client stopped reading after the first reply and started TLS: the rest was lost.
            if (got.rfind(expected, 0) != 0) fail(i, sent, expected, got);
            break;
        }
        compare(i, sent, expected, got);
    }
    if (result.passed && !carry.empty()) fail(steps.size(), "(end)", "", carry);
    return result;
}

struct file_case {
    const char* file;
    listener_kind kind;
};

void replay_all(const char* set, int expected_total, bool bytewise) {
    const file_case files[] = {{"smtp-2525.json", listener_kind::smtp},
                               {"smtps-2465.json", listener_kind::smtps},
                               {"submission-2587.json", listener_kind::submission}};
    int total = 0, passed = 0;
    for (const auto& fc : files) {
        std::string path = std::string(RELAYBAIT_TRANSCRIPTS_DIR) + "/" + set + "/" + fc.file;
        std::ifstream in(path, std::ios::binary);
        ASSERT_TRUE(in) << path;
        std::stringstream ss;
        ss << in.rdbuf();
        auto doc = boost::json::parse(ss.str()).as_object();
        for (const auto& [name, steps] : doc) {
            ++total;
            auto r = replay(fc.kind, steps.as_array(), bytewise);
            if (r.passed)
                ++passed;
            else
                ADD_FAILURE() << set << "/" << fc.file << " " << std::string(name) << ": " << r.failure;
        }
    }
    std::cout << "[ replay ] " << set << " " << (bytewise ? "(byte by byte) " : "") << passed << " / " << total
              << " dialogues byte-identical\n";
    EXPECT_EQ(total, expected_total);
    EXPECT_EQ(passed, total);
}

// The 3 x 72 dialogues captured with the persona.
TEST(TranscriptReplay, AllDialoguesMatchPostfix) { replay_all("postfix-3.7", 216, false); }
TEST(TranscriptReplay, AllDialoguesMatchPostfixFedByteByByte) { replay_all("postfix-3.7", 216, true); }
// The 3 x 52 differential dialogues (scanner probes, address forms, AUTH/MAIL/BDAT edge cases).
TEST(TranscriptReplay, ExtraDialoguesMatchPostfix) { replay_all("postfix-3.7-extra", 156, false); }
TEST(TranscriptReplay, ExtraDialoguesMatchPostfixFedByteByByte) { replay_all("postfix-3.7-extra", 156, true); }

}  // namespace
}  // namespace relaybait::smtp
