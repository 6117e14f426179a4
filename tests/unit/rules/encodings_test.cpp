#include <gtest/gtest.h>

#include <algorithm>

#include "rules/encodings.hpp"

using namespace relaybait::rules;

namespace {
bool has(const std::vector<encoded_form>& forms, std::string_view text) {
    return std::any_of(forms.begin(), forms.end(), [&](const encoded_form& f) { return f.text == text; });
}
}  // namespace

TEST(Encodings, Base64Encode) {
    EXPECT_EQ(base64_encode(""), "");
    EXPECT_EQ(base64_encode("f"), "Zg==");
    EXPECT_EQ(base64_encode("fo"), "Zm8=");
    EXPECT_EQ(base64_encode("foo"), "Zm9v");
    EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}

// The three offset forms must appear in real base64 of texts holding the value at any position.
TEST(Encodings, Base64AtEachOffsetMatchesRealEncodings) {
    const std::string values[] = {"198.51.100.23", "2001:db8::25", "mx.example.net", "hunter22"};
    const std::string prefixes[] = {"", "x", "ab", "Relay test ", "IP: ", "server=", "\xff\x00\x10"};
    const std::string suffixes[] = {"", ".", " works", "\r\n", "zz"};
    for (const auto& value : values) {
        for (const auto& prefix : prefixes) {
            for (const auto& suffix : suffixes) {
                const std::string encoded = base64_encode(prefix + value + suffix);
                const std::string form = base64_at_offset(value, static_cast<int>(prefix.size() % 3));
                ASSERT_FALSE(form.empty());
                EXPECT_NE(encoded.find(form), std::string::npos)
                    << value << " prefix " << prefix.size() << " suffix '" << suffix << "' " << encoded << " / " << form;
            }
        }
    }
    EXPECT_EQ(base64_at_offset("1.2.3.4", 0), "MS4yLjMuN");  // 56 bits: 9 whole characters
    EXPECT_EQ(base64_at_offset("ab", 0), "");  // too short to be meaningful
    EXPECT_EQ(base64_at_offset("x", 3), "");
}

TEST(Encodings, FormsOfAnIpv4Address) {
    const auto forms = encodings("198.51.100.23");
    EXPECT_EQ(forms.front().text, "198.51.100.23");
    EXPECT_TRUE(has(forms, "3139382e35312e3130302e3233"));  // hex
    EXPECT_TRUE(has(forms, "3139382E35312E3130302E3233"));
    EXPECT_TRUE(has(forms, "32.001.15.891"));  // reversed text
    EXPECT_TRUE(has(forms, "23.100.51.198"));  // reversed octets (PTR order)
    EXPECT_TRUE(has(forms, "198.051.100.023"));
    EXPECT_TRUE(has(forms, "[198.51.100.23]"));
    EXPECT_TRUE(has(forms, "%31%39%38%2E%35%31%2E%31%30%30%2E%32%33"));
    EXPECT_TRUE(has(forms, "3325256727"));  // 32-bit decimal
    int base64 = 0;
    for (const auto& f : forms)
        if (f.kind.rfind("base64", 0) == 0) {
            ++base64;
            EXPECT_TRUE(f.exact);
        }
    EXPECT_EQ(base64, 3);
    for (std::size_t i = 0; i < forms.size(); ++i)
        for (std::size_t j = i + 1; j < forms.size(); ++j) EXPECT_NE(forms[i].text, forms[j].text);
}

TEST(Encodings, FormsOfAnIpv6AddressAndText) {
    const auto forms = encodings("2001:db8::25");
    EXPECT_TRUE(has(forms, "2001:0db8:0000:0000:0000:0000:0000:0025"));
    EXPECT_TRUE(has(forms, "2001%3Adb8%3A%3A25"));
    EXPECT_TRUE(has(forms, "[IPv6:2001:db8::25]"));
    const auto text = encodings("a b");
    EXPECT_TRUE(has(text, "a%20b"));
    EXPECT_TRUE(has(text, "b a"));
    EXPECT_TRUE(encodings("").empty());
}
