#pragma once
// Rules over stored mail (`relaybait rules test|apply`): each selected message's file is read
// back, relaybait's trace block removed, the first max_scan_bytes parsed, and the data-hook
// context rebuilt from its row (session, envelope, the password of the session's accepted
// AUTH). Read-only: nothing here changes the database or the Maildir.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mime/message.hpp"
#include "rules/rules.hpp"
#include "store/database.hpp"

namespace relaybait::cli {

struct message_selection {
    std::optional<std::string> folder;  // stored form: "" the inbox, ".Probes"; none = every folder
    std::optional<std::string> since;   // received_at >= since
    std::size_t limit = 0;              // the newest `limit` messages; 0 = all of them
};

struct rule_match {
    store::message_record message;
    const rules::rule* rule = nullptr;  // points into the rule_set given to scan_messages
};

struct scan_result {
    std::vector<rule_match> matches;  // newest first
    std::size_t examined = 0;         // messages whose file was read and evaluated
    std::size_t missing = 0;          // selected but skipped: the file is gone (dropped, expunged)
};

// The rules' view of a stored message (hook data).
rules::context stored_message_context(const store::message_record& message, std::string auth_password,
                                      const mime::parsed_message& parsed);

// Evaluates `only` (its condition alone, so a disabled rule can be tried before it is turned
// on) or, when null, the set's first match at the data hook, over the selected messages.
// Every message is seen at most once even while the server adds new ones.
scan_result scan_messages(const store::database& db, const std::filesystem::path& data_dir,
                          const message_selection& selection, const rules::rule_set& set, const rules::rule* only,
                          std::uint64_t max_scan_bytes);

}  // namespace relaybait::cli
