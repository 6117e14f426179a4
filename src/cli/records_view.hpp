#pragma once
// How the stored records look to the operator: one table per list command, one field list per
// show command, and the JSON documents of --json. Pure functions of the records, tested directly.
#include <boost/json/value.hpp>

#include <ostream>
#include <string>
#include <vector>

#include "store/records.hpp"

namespace relaybait::cli {

void render_message_list(std::ostream& out, const std::vector<store::message_record>& messages);
void render_message(std::ostream& out, const store::message_record& message);
void render_session_list(std::ostream& out, const std::vector<store::session_record>& sessions);
void render_session(std::ostream& out, const store::session_record& session);  // with the transcript
void render_credential_list(std::ostream& out, const std::vector<store::credential_record>& credentials);

// "2026-11-23T18:07:03.123456Z" -> "2026-11-23 18:07:03" for tables.
std::string short_time(const store::timestamp& at);

// Attacker bytes that are not valid UTF-8 become U+FFFD so the document is always valid JSON.
std::string json_safe(std::string_view bytes);

boost::json::value to_json(const store::message_record& message);
boost::json::value to_json(const store::session_record& session);
boost::json::value to_json(const store::credential_record& credential);

template <typename Record>
boost::json::value to_json(const std::vector<Record>& records) {
    boost::json::array array;
    for (const Record& record : records) array.push_back(to_json(record));
    return array;
}

// The document and a newline, as --json prints it: C1 and bidi controls, DEL (all that
// is_terminal_control() lists) written as \uXXXX escapes, never raw (the same decoded values).
void print_json(std::ostream& out, const boost::json::value& document);

}  // namespace relaybait::cli
