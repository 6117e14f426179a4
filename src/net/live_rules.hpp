#pragma once
// The running server's rules: loaded at start (a bad file stops `serve` with FILE:LINE:COLUMN,
// exit 2), re-read on SIGHUP (a bad file is logged and the last good rules stay active).
// After every load DATA/rules-status.json says what happened, for `relaybait rules reload`:
//   {"generation": N, "ok": bool, "file": "...", "rules": N, "enabled": N, "error": "...", "at": "ISO"}
#include <cstdint>
#include <filesystem>
#include <string>

#include "config/config.hpp"
#include "rules/rules.hpp"

namespace relaybait::net {

class live_rules {
public:
    // Throws config::config_error naming the rules file, line and column when it is bad.
    live_rules(const config::settings& settings, rules::self_identity identity);

    const rules::rule_store& store() const { return store_; }
    // Re-reads the file; false (and the error logged and in the status file) when it is bad.
    bool reload();

private:
    void write_status(bool ok, const std::string& error);
    std::string origin() const;

    std::filesystem::path status_file_;
    rules::rule_store store_;
    std::uint64_t generation_ = 0;
};

}  // namespace relaybait::net
