#pragma once
// Internal: a minimal RAII wrapper over SQLite statements for the relay's tables.
#include <sqlite3.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace relaybait::relay::detail {

[[noreturn]] inline void sqlite_fail(sqlite3* db, std::string_view what) {
    throw std::runtime_error("relay db: " + std::string(what) + ": " + sqlite3_errmsg(db));
}

inline void exec(sqlite3* db, const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
        std::string message = error ? error : "unknown error";
        sqlite3_free(error);
        throw std::runtime_error(std::string("relay db: ") + message + " in: " + sql);
    }
}

class stmt {
public:
    stmt(sqlite3* db, const char* sql) : db_(db) {
        if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) sqlite_fail(db, sql);
    }
    ~stmt() { sqlite3_finalize(s_); }
    stmt(const stmt&) = delete;
    stmt& operator=(const stmt&) = delete;

    stmt& bind(int i, std::string_view text) {
        sqlite3_bind_text(s_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
        return *this;
    }
    stmt& bind(int i, const char* text) { return bind(i, std::string_view(text)); }
    stmt& bind(int i, const std::string& text) { return bind(i, std::string_view(text)); }
    stmt& bind(int i, std::int64_t value) {
        sqlite3_bind_int64(s_, i, value);
        return *this;
    }
    stmt& bind(int i, std::uint64_t value) { return bind(i, static_cast<std::int64_t>(value)); }
    stmt& bind(int i, int value) { return bind(i, static_cast<std::int64_t>(value)); }
    stmt& bind(int i, unsigned value) { return bind(i, static_cast<std::int64_t>(value)); }
    stmt& bind(int i, bool value) { return bind(i, static_cast<std::int64_t>(value ? 1 : 0)); }

    // True while a row is available.
    bool step() {
        const int rc = sqlite3_step(s_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        sqlite_fail(db_, sqlite3_sql(s_));
    }
    void run() { while (step()) {} }
    void reset() {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
    }

    std::int64_t i64(int col) const { return sqlite3_column_int64(s_, col); }
    std::string text(int col) const {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
        return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : std::string();
    }
    bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

private:
    sqlite3* db_;
    sqlite3_stmt* s_ = nullptr;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back when destroyed uncommitted.
class transaction {
public:
    explicit transaction(sqlite3* db) : db_(db) { exec(db_, "BEGIN IMMEDIATE"); }
    ~transaction() {
        if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    void commit() {
        exec(db_, "COMMIT");
        done_ = true;
    }

private:
    sqlite3* db_;
    bool done_ = false;
};

}  // namespace relaybait::relay::detail
