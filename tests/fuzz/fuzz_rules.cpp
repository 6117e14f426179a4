// libFuzzer target for the rules language and rules files: arbitrary bytes are compiled as a
// condition (and evaluated against a fixed context) and parsed as a rules.toml document.
// Run: build/fuzz/tests/fuzz/fuzz_rules -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mime/message.hpp"
#include "rules/expr.hpp"
#include "rules/rules.hpp"

using namespace relaybait;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const rules::self_identity self{{"198.51.100.23"}, {"2001:db8::25"}, "mx.example.net", {25, 465, 587}};
    static const mime::parsed_message message = mime::parse(
        "Subject: relay test 198.51.100.23\r\nX-Mailer: PHP\r\n\r\nbody line\r\nMS4yLjMuNA==\r\n");
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    rules::context ctx;
    ctx.client_ip = "203.0.113.9";
    ctx.helo = "x.example";
    ctx.auth_user = "user@example.org";
    ctx.auth_password = "password";
    ctx.mail_from = "a@b.example";
    ctx.rcpt_to = {"c@d.example"};
    ctx.message = &message;
    ctx.size = 100;
    try {
        const auto expr = rules::compile(text, self);
        rules::evaluate(*expr, ctx);
    } catch (const rules::expression_error&) {
    }
    try {
        const auto set = rules::rule_set::parse(text, "fuzz.toml", self);
        for (int hook = 0; hook < 6; ++hook) {
            ctx.hook = static_cast<rules::hook_point>(hook);
            set.first_match(ctx);
        }
    } catch (const rules::rules_error&) {
    }
    return 0;
}
