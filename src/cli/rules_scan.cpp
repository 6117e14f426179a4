#include "cli/rules_scan.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <unordered_set>

#include "store/message_admin.hpp"
#include "store/trace_block.hpp"

namespace relaybait::cli {
namespace {

// Our trace block is a few header lines of at most 998 bytes each: read this much beyond
// max_scan_bytes so the block can be removed and max_scan_bytes of the client's bytes remain.
constexpr std::uint64_t trace_block_allowance = 64 * 1024;
constexpr std::size_t page_size = 1000;

// The first `max_bytes` of a file; nullopt when it cannot be opened (gone since it was located).
std::optional<std::string> read_prefix(const std::filesystem::path& file, std::uint64_t max_bytes) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return std::nullopt;
    std::string bytes;
    char buffer[64 * 1024];
    while (bytes.size() < max_bytes) {
        const auto wanted = static_cast<std::streamsize>(std::min<std::uint64_t>(sizeof buffer, max_bytes - bytes.size()));
        in.read(buffer, wanted);
        if (in.gcount() <= 0) break;
        bytes.append(buffer, static_cast<std::size_t>(in.gcount()));
    }
    return bytes;
}

// The password of the session's accepted AUTH (the one matching the message's user when the
// client authenticated more than once); empty when there is none.
class session_passwords {
public:
    explicit session_passwords(const store::database& db) : db_(db) {}

    const std::string& of(const store::message_record& message) {
        const std::string key = message.session_id + '\n' + message.auth_username;
        auto found = cache_.find(key);
        if (found != cache_.end()) return found->second;
        std::string password;
        if (!message.auth_username.empty() && !message.session_id.empty()) {
            store::list_filter filter;
            filter.session_id = message.session_id;
            filter.limit = 10'000;
            bool exact = false;
            for (const auto& credential : db_.list_credentials(filter)) {  // newest first
                if (!credential.accepted) continue;
                if (credential.username == message.auth_username && !exact) {
                    password = credential.password;
                    exact = true;
                } else if (password.empty() && !exact) {
                    password = credential.password;
                }
            }
        }
        if (cache_.size() > 10'000) cache_.clear();  // bounded; a cache, not a record
        return cache_.emplace(key, std::move(password)).first->second;
    }

private:
    const store::database& db_;
    std::map<std::string, std::string> cache_;
};

}  // namespace

rules::context stored_message_context(const store::message_record& message, std::string auth_password,
                                      const mime::parsed_message& parsed) {
    rules::context ctx;
    ctx.hook = rules::hook_point::data;
    ctx.client_ip = message.peer_ip;
    ctx.listener = message.listener;
    ctx.tls = !message.tls_version.empty();
    ctx.tls_version = message.tls_version;
    ctx.helo = message.helo_name;
    ctx.auth_user = message.auth_username;
    ctx.auth_password = message.auth_username.empty() ? std::string() : std::move(auth_password);
    ctx.mail_from = message.mail_from;
    ctx.rcpt_to = message.recipients;
    ctx.message = &parsed;
    ctx.size = message.size;
    return ctx;
}

scan_result scan_messages(const store::database& db, const std::filesystem::path& data_dir,
                          const message_selection& selection, const rules::rule_set& set, const rules::rule* only,
                          std::uint64_t max_scan_bytes) {
    scan_result result;
    session_passwords passwords(db);
    std::unordered_set<std::int64_t> seen;
    store::list_filter filter;
    filter.folder = selection.folder;
    filter.since = selection.since;
    std::size_t offset = 0;
    for (;;) {
        const std::size_t remaining = selection.limit == 0 ? page_size : selection.limit - seen.size();
        if (remaining == 0) break;
        filter.limit = std::min(page_size, remaining);
        filter.offset = offset;
        const auto page = db.list_messages(filter);
        offset += page.size();
        for (const auto& message : page) {
            // Newest first: a message arriving meanwhile shifts the pages by one, so a row may
            // come twice; it is evaluated once.
            if (!seen.insert(message.id).second) continue;
            const auto file = store::locate_message_file(data_dir, message);  // nullopt for a dropped message
            const auto stored = file ? read_prefix(*file, max_scan_bytes + trace_block_allowance) : std::nullopt;
            if (!stored) {
                ++result.missing;
                continue;
            }
            std::string_view raw = store::strip_trace_block(*stored);
            if (raw.size() > max_scan_bytes) raw = raw.substr(0, max_scan_bytes);
            const mime::parsed_message parsed = mime::parse(raw);
            const rules::context ctx = stored_message_context(message, passwords.of(message), parsed);
            ++result.examined;
            const rules::rule* decided = only ? (only->condition_holds(ctx) ? only : nullptr) : set.first_match(ctx);
            if (decided) result.matches.push_back({message, decided});
        }
        if (page.size() < filter.limit) break;
    }
    return result;
}

}  // namespace relaybait::cli
