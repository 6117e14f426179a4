#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>

#include "mime/message.hpp"
#include "rules/rules.hpp"

using namespace relaybait;
using namespace relaybait::rules;

namespace {

self_identity self() {
    self_identity s;
    s.ipv4 = {"198.51.100.23"};
    s.hostname = "mx.example.net";
    return s;
}

std::string error_of(std::string_view text) {
    try {
        rule_set::parse(text, "rules.toml", self());
    } catch (const rules_error& e) {
        return e.what();
    }
    return "ok";
}

const char* two_rules = R"(
[[rule]]
name = "b"
kind = "spam"
priority = 20
when = 'subject contains "x"'
[rule.actions]
folder = "Spam"

[[rule]]
name = "a"
kind = "probe"
priority = 10
when = 'subject contains "x"'
[rule.actions]
folder = "Probes"
tags = ["probe"]
relay = true
reply = { code = 451, text = "4.7.1 Try again later" }
tarpit_ms = 1500
)";

}  // namespace

TEST(RuleSet, ParsesRulesAndActions) {
    const auto set = rule_set::parse(two_rules, "rules.toml", self());
    ASSERT_EQ(set.rules().size(), 2u);
    const rule& a = set.rules()[1];
    EXPECT_EQ(a.name, "a");
    EXPECT_EQ(a.kind, "probe");
    EXPECT_EQ(a.priority, 10);
    EXPECT_TRUE(a.enabled);
    EXPECT_EQ(a.hook, hook_point::data);
    EXPECT_EQ(a.line, 10u);
    EXPECT_EQ(a.actions.folder, "Probes");
    EXPECT_EQ(a.actions.tags, std::vector<std::string>{"probe"});
    EXPECT_TRUE(a.actions.relay);
    ASSERT_TRUE(a.actions.reply.has_value());
    EXPECT_EQ(a.actions.reply->code, 451);
    EXPECT_EQ(a.actions.reply->text, "4.7.1 Try again later");
    EXPECT_EQ(a.actions.tarpit.count(), 1500);
    EXPECT_TRUE(set.warnings().empty());
}

TEST(RuleSet, FirstMatchByPriorityThenFileOrder) {
    auto set = rule_set::parse(two_rules, "rules.toml", self());
    mime::parsed_message m;
    m.subject = "x";
    context ctx;
    ctx.message = &m;
    const rule* hit = set.first_match(ctx);
    ASSERT_NE(hit, nullptr);
    EXPECT_EQ(hit->name, "a");  // priority 10 before 20, though later in the file
    m.subject = "y";
    EXPECT_EQ(set.first_match(ctx), nullptr);

    const auto tie = rule_set::parse(R"(
[[rule]]
name = "first"
kind = "k"
when = "true"
[[rule]]
name = "second"
kind = "k"
when = "true"
[[rule]]
name = "disabled"
kind = "k"
priority = -5
enabled = false
when = "true"
)", "t", self());
    EXPECT_EQ(tie.first_match(ctx)->name, "first");
    // Copies keep working (the order is kept as indexes).
    const rule_set copy = tie;
    EXPECT_EQ(copy.first_match(ctx), &copy.rules()[0]);
}

TEST(RuleSet, HooksSelectRules) {
    const auto set = rule_set::parse(R"(
[[rule]]
name = "at-connect"
kind = "scan"
hook = "connect"
when = 'client_ip in "192.0.2.0/24"'
[rule.actions]
reply = { code = 554, text = "5.7.1 Go away" }
[[rule]]
name = "at-rcpt"
kind = "spam"
hook = "rcpt"
when = 'rcpt_domain equals "gmail.com"'
[[rule]]
name = "at-data"
kind = "spam"
when = 'true'
)", "t", self());
    context ctx;
    ctx.client_ip = "192.0.2.7";
    ctx.hook = hook_point::connect;
    EXPECT_EQ(set.first_match(ctx)->name, "at-connect");
    ctx.hook = hook_point::ehlo;
    EXPECT_EQ(set.first_match(ctx), nullptr);
    ctx.hook = hook_point::rcpt;
    ctx.rcpt_to = {"x@GMail.com"};
    EXPECT_EQ(set.first_match(ctx)->name, "at-rcpt");
    ctx.hook = hook_point::data;
    EXPECT_EQ(set.first_match(ctx)->name, "at-data");
}

TEST(RuleSet, ErrorsNameFileLineColumn) {
    const std::pair<const char*, const char*> cases[] = {
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = 'subject contains'\n",
         "rules.toml:4:25: rule \"x\": when: expected a value (a string, a number, a list, $name, encoded(...)), found the end of the expression"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = \"size > 10 and \\\"a\\\"\"\n",
         "rules.toml:4:23: rule \"x\": when: expected a field name, '(' or 'not', found a string"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = '''\ntls and\n   subjekt contains \"a\"'''\n",
         "rules.toml:6:4: rule \"x\": when: unknown field 'subjekt'"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = 'client_ip in \"10.0.0.0/40\"'\n",
         "rules.toml:4:22: rule \"x\": when: invalid address or CIDR network \"10.0.0.0/40\""},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = 'subject matches \"a(\"'\n",
         "rules.toml:4:25: rule \"x\": when: bad regular expression: missing ): a("},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = \"true\"\ncolour = 1\n",
         "rules.toml:5:1: rule \"x\": unknown key 'colour' (known: name, kind, description, priority, enabled, hook, when, actions)"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\npriority = \"high\"\nwhen = \"true\"\n",
         "rules.toml:4:12: rule \"x\": priority: expected an integer, got a string"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = \"true\"\n[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = \"true\"\n",
         "rules.toml:6:8: duplicate rule name \"x\""},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nhook = \"mail\"\nwhen = \"true\"\n[rule.actions]\nrelay = true\n",
         "rules.toml:7:9: rule \"x\": actions.relay: only allowed in rules at hook data (this rule runs at hook mail)"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = \"true\"\nactions = { reply = { code = 700 } }\n",
         "rules.toml:5:30: rule \"x\": actions.reply.code: must be an SMTP code from 200 to 599"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = \"true\"\nactions = { tarpit_ms = 999999 }\n",
         "rules.toml:5:25: rule \"x\": actions.tarpit_ms: must be from 0 to 60000"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = \"true\"\nactions = { folder = \"../etc\" }\n",
         "rules.toml:5:22: rule \"x\": actions.folder: INBOX or a Maildir++ folder name of letters, digits, '_', '-' (sub-folders separated by '.')"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = \"true\"\nactions = { drop = true, relay = true }\n",
         "rules.toml:5:34: rule \"x\": actions.relay: a dropped message cannot be relayed"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = \"true\"\nactions = { nope = 1 }\n",
         "rules.toml:5:13: rule \"x\": actions.unknown key 'nope' (known: folder, tags, drop, relay, reply, tarpit_ms)"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\nhook = \"quit\"\nwhen = \"true\"\n",
         "rules.toml:4:8: rule \"x\": hook: unknown hook \"quit\" (connect, ehlo, auth, mail, rcpt, data)"},
        {"[[rule]]\nname = \"x\"\nkind = \"k\"\n", "rules.toml:1:1: rule \"x\": missing key 'when' (the condition; use \"true\" to always match)"},
        {"[[rule]]\nkind = \"k\"\n", "rules.toml:1:1: rule: missing key 'name'"},
        {"[[rule]]\nname = \"x\"\nwhen = \"true\"\n", "rules.toml:1:1: rule \"x\": missing key 'kind' (probe, spam, phishing, malware, scan or any label)"},
        {"rules = 1\n", "rules.toml:1:1: unknown key 'rules' (known: rule)"},
        {"[[rule]\nname = 1\n", nullptr},  // TOML syntax error: position from toml++
    };
    for (const auto& [text, expected] : cases) {
        const std::string got = error_of(text);
        if (expected == nullptr) {
            EXPECT_EQ(got.rfind("rules.toml:1:", 0), 0u) << got;
        } else {
            EXPECT_EQ(got, expected) << text;
        }
    }
}

TEST(RuleSet, FolderIsCheckedWithTheStoresRule) {
    // What store::maildir_folder_for accepts loads (kept as written); the rest is a load error,
    // so a rule never names a folder the store would refuse.
    const auto rule_with_folder = [](const std::string& folder) {
        return "[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = \"true\"\nactions = { folder = \"" + folder + "\" }\n";
    };
    for (const char* ok : {"Probes", ".Probes", "Spam.Bulk", "INBOX", "inbox", ""}) {
        const auto set = rule_set::parse(rule_with_folder(ok), "rules.toml", self());
        EXPECT_EQ(set.rules().at(0).actions.folder, ok);
    }
    for (const char* bad : {"My Probes", "a..b", "a.", "..", "a/b", "\u00e9t\u00e9"})
        EXPECT_NE(error_of(rule_with_folder(bad)).find("actions.folder: INBOX or a Maildir++ folder name"), std::string::npos) << bad;
}

TEST(RuleSet, ErrorFieldsAndEscapesInTomlStrings) {
    try {
        // \t and \u00e9 in a TOML basic string shift the raw columns: the error must still point at 'frobs'.
        rule_set::parse("[[rule]]\nname = \"x\"\nkind = \"k\"\nwhen = \"subject\\tcontains \\\"\\u00e9\\\" and size frobs 1\"\n",
                        "f.toml", self());
        FAIL();
    } catch (const rules_error& e) {
        EXPECT_EQ(e.file(), "f.toml");
        EXPECT_EQ(e.line(), 4u);
        EXPECT_EQ(e.column(), 47u) << e.what();
        EXPECT_NE(e.message().find("frobs"), std::string::npos);
    }
}

TEST(RuleSet, WarningsForFieldsTheHookCannotSee) {
    self_identity none;
    const auto set = rule_set::parse(R"([[rule]]
name = "early"
kind = "k"
hook = "mail"
when = 'subject contains "x" or body contains $self.ipv6'
)", "w.toml", none);
    ASSERT_EQ(set.warnings().size(), 3u);
    EXPECT_EQ(set.warnings()[0].to_string(),
              "w.toml:5:9: rule \"early\": 'subject' is only known from hook data on, but the rule runs at hook mail: that comparison is always false");
    EXPECT_EQ(set.warnings()[2].to_string(),
              "w.toml:5:47: rule \"early\": '$self.ipv6' has no value configured: comparisons with it are false");
}

TEST(RuleStore, ReloadKeepsLastGood) {
    const auto dir = std::filesystem::temp_directory_path() / ("relaybait-rules-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto path = dir / "rules.toml";
    auto write = [&](std::string_view text) { std::ofstream(path, std::ios::trunc) << text; };
    rule_store store(path, self());
    EXPECT_TRUE(store.current()->rules().empty());
    EXPECT_TRUE(store.reload().has_value());  // no file yet
    write("[[rule]]\nname = \"one\"\nkind = \"probe\"\nwhen = 'subject contains $self.ipv4'\n");
    EXPECT_FALSE(store.reload().has_value());
    auto first = store.current();
    ASSERT_EQ(first->rules().size(), 1u);
    write("[[rule]]\nname = \"one\"\nkind = \"probe\"\nwhen = 'subject contains'\n");
    const auto error = store.reload();
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->line(), 4u);
    EXPECT_EQ(store.current(), first);  // last good set still active
    mime::parsed_message m;
    m.subject = "203.0.113.1";
    context ctx;
    ctx.message = &m;
    EXPECT_EQ(store.current()->first_match(ctx), nullptr);
    write("[[rule]]\nname = \"two\"\nkind = \"probe\"\nwhen = 'subject contains $self.ipv4'\n");
    self_identity moved = self();
    moved.ipv4 = {"203.0.113.1"};
    EXPECT_FALSE(store.reload(moved).has_value());
    ASSERT_NE(store.current()->first_match(ctx), nullptr);
    EXPECT_EQ(store.current()->first_match(ctx)->name, "two");
    EXPECT_EQ(first->rules()[0].name, "one");  // old snapshot stays valid for its holders
    store.install(rule_set{});
    EXPECT_TRUE(store.current()->rules().empty());
    std::filesystem::remove_all(dir);
}

namespace {

struct scratch_dir {
    std::filesystem::path path;
    explicit scratch_dir(std::string_view tag)
        : path(std::filesystem::temp_directory_path() /
               ("relaybait-rules-" + std::string(tag) + "-" + std::to_string(::getpid()))) {
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~scratch_dir() { std::filesystem::remove_all(path); }
};

// load() in a thread; a load that blocks is a failure, and is then released by opening the FIFO
// for writing (so that the test ends either way).
std::string load_error_within(const std::filesystem::path& path, std::chrono::seconds limit) {
    auto pending = std::async(std::launch::async, [path]() -> std::string {
        try {
            rule_set::load(path, self());
            return "ok";
        } catch (const rules_error& e) {
            return e.what();
        }
    });
    if (pending.wait_for(limit) != std::future_status::ready) {
        ADD_FAILURE() << "rule_set::load blocked on " << path;
        const int writer = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
        if (writer >= 0) ::close(writer);
    }
    return pending.get();
}

}  // namespace

TEST(RuleSet, LoadRefusesWhatIsNotARegularFile) {
    scratch_dir dir("fifo");
    const auto fifo = dir.path / "rules.toml";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    EXPECT_EQ(load_error_within(fifo, std::chrono::seconds(5)),
              fifo.string() + ": not a regular file (a FIFO, socket or device is not read)");
    // (/dev/null rather than /dev/zero: a regression must fail, not read until memory runs out.)
    EXPECT_EQ(load_error_within("/dev/null", std::chrono::seconds(5)),
              "/dev/null: not a regular file (a FIFO, socket or device is not read)");
    EXPECT_EQ(load_error_within(dir.path, std::chrono::seconds(5)),
              dir.path.string() + ": is a directory, not a rules file");
}

TEST(RuleSet, LoadRefusesAFileOverTheLimit) {
    scratch_dir dir("large");
    const auto path = dir.path / "rules.toml";
    const std::string expected = path.string() + ": rules file larger than 8 MiB (8388608 bytes)";
    std::ofstream(path) << "# rules\n";
    EXPECT_EQ(load_error_within(path, std::chrono::seconds(5)), "ok");
    // Exactly the limit is read (a comment line of 8 MiB).
    std::ofstream(path, std::ios::trunc | std::ios::binary) << '#' << std::string(max_rules_file_bytes - 2, ' ') << '\n';
    ASSERT_EQ(std::filesystem::file_size(path), max_rules_file_bytes);
    EXPECT_EQ(load_error_within(path, std::chrono::seconds(60)), "ok");
    // One byte more is refused, naming the file and the limit.
    std::filesystem::resize_file(path, max_rules_file_bytes + 1);
    ASSERT_EQ(load_error_within(path, std::chrono::seconds(5)), expected);  // ASSERT: a regression must not read 4 GiB
    // A huge (sparse) file is refused from its size, before anything is read.
    std::filesystem::resize_file(path, std::uintmax_t{4} << 30);
    EXPECT_EQ(load_error_within(path, std::chrono::seconds(5)), expected);
}

TEST(RuleStore, ReloadOfAFifoOrAnOversizedFileKeepsTheLastGoodRules) {
    scratch_dir dir("reload");
    const auto path = dir.path / "rules.toml";
    std::ofstream(path) << "[[rule]]\nname = \"one\"\nkind = \"probe\"\nwhen = 'subject contains \"x\"'\n";
    rule_store store(path, self());
    ASSERT_FALSE(store.reload().has_value());
    const auto good = store.current();
    ASSERT_EQ(good->rules().size(), 1u);

    std::filesystem::resize_file(path, max_rules_file_bytes + 1);
    auto error = store.reload();
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->file(), path.string());
    EXPECT_EQ(error->message(), "rules file larger than 8 MiB (8388608 bytes)");
    EXPECT_EQ(store.current(), good);

    std::filesystem::remove(path);
    ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
    auto pending = std::async(std::launch::async, [&store] { return store.reload(); });
    if (pending.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
        ADD_FAILURE() << "reload blocked on a FIFO";
        const int writer = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
        if (writer >= 0) ::close(writer);
    }
    error = pending.get();
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->message(), "not a regular file (a FIFO, socket or device is not read)");
    EXPECT_EQ(store.current(), good);
}

// A reload runs on a thread pool, where an escaping exception calls std::terminate: whatever the
// loader throws is returned as a rules_error and the last good rules stay.
TEST(RuleStore, ReloadTurnsAnyExceptionIntoARulesError) {
    int calls = 0;
    rule_store store("any.toml", self(), [&calls](const std::filesystem::path& path, const self_identity& s) {
        if (++calls == 1) return rule_set::parse(two_rules, path.string(), s);
        if (calls == 2) throw std::bad_alloc();
        throw std::length_error("basic_string::_M_create");
    });
    ASSERT_FALSE(store.reload().has_value());
    const auto good = store.current();
    ASSERT_FALSE(good->rules().empty());
    std::optional<rules_error> error;
    ASSERT_NO_THROW(error = store.reload());
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->file(), "any.toml");
    EXPECT_EQ(std::string(error->what()), "any.toml: cannot load the rules: std::bad_alloc");
    ASSERT_NO_THROW(error = store.reload());
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->message(), "cannot load the rules: basic_string::_M_create");
    EXPECT_EQ(store.current(), good);
}

TEST(RuleSet, LoadMissingFile) {
    try {
        rule_set::load("/nonexistent/rules.toml", self());
        FAIL();
    } catch (const rules_error& e) {
        EXPECT_EQ(std::string(e.what()), "/nonexistent/rules.toml: cannot open the rules file");
    }
}
