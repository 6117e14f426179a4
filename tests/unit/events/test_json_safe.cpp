#include "events/json_safe.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

using relaybait::events::is_valid_utf8;
using relaybait::events::make_json_safe;
using relaybait::events::to_json_safe;

namespace {
const std::string fffd = "\xEF\xBF\xBD";
}

TEST(JsonSafe, ValidTextIsUnchanged) {
    for (std::string s : {std::string(""), std::string("hello"), std::string("caf\xC3\xA9"),
                          std::string("\xE2\x82\xAC 10"), std::string("\xF0\x9F\x98\x80"),
                          std::string("ctl\x01\x7F\0x", 7)}) {
        EXPECT_TRUE(is_valid_utf8(s)) << s;
        EXPECT_EQ(to_json_safe(s), s);
    }
}

TEST(JsonSafe, IllFormedSequencesBecomeReplacementCharacters) {
    EXPECT_EQ(to_json_safe("a\xFF" "b"), "a" + fffd + "b");
    EXPECT_EQ(to_json_safe("\xC0\xAF"), fffd + fffd);              // overlong '/'
    EXPECT_EQ(to_json_safe("\xED\xA0\x80"), fffd + fffd + fffd);   // surrogate D800
    EXPECT_EQ(to_json_safe("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // > U+10FFFF
    EXPECT_EQ(to_json_safe("\xE2\x82"), fffd);                     // truncated at end
    EXPECT_EQ(to_json_safe("\xE2\x82x"), fffd + "x");              // truncated, maximal subpart
    EXPECT_EQ(to_json_safe("\x80\x80"), fffd + fffd);              // lone continuations
    EXPECT_EQ(to_json_safe("ok\xC3\xA9\xC3"), "ok\xC3\xA9" + fffd);
}

TEST(JsonSafe, EveryByteStringSerialisesToParsableJson) {
    std::string all;
    for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
    all += "\xE2\x82\xF0\x9F\x98\xED\xBF\xBF";
    const std::string safe = to_json_safe(all);
    EXPECT_TRUE(is_valid_utf8(safe));
    boost::json::value v = boost::json::string(safe);
    const std::string text = boost::json::serialize(v);
    boost::system::error_code ec;
    auto parsed = boost::json::parse(text, ec);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(std::string(parsed.as_string()), safe);
}

TEST(JsonSafe, MakeJsonSafeWalksKeysArraysAndObjects) {
    boost::json::object inner;
    inner["k\xFF"] = "v\xFE";
    boost::json::value v = boost::json::object{{"list", boost::json::array{"\xC3", 1, "fine"}}, {"inner", inner}};
    make_json_safe(v);
    const auto text = boost::json::serialize(v);
    EXPECT_TRUE(is_valid_utf8(text));
    EXPECT_EQ(std::string(v.at("list").at(0).as_string()), fffd);
    EXPECT_EQ(std::string(v.at("inner").at("k" + fffd).as_string()), "v" + fffd);
}
