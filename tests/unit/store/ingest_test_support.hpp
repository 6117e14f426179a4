#pragma once
// Helpers shared by the store tests that drive ingest: a typical record, a blocking commit and
// reading back what landed in the Maildir.
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include "store/ingest.hpp"

namespace relaybait::test {

inline store::message_record record_for(const std::string& queue_id) {
    store::message_record r;
    r.queue_id = queue_id;
    r.session_id = "0123456789abcdef";
    r.peer_ip = "198.51.100.7";
    r.listener = "smtp";
    r.mail_from = "a@b";
    r.recipients = {"victim@example.com"};
    return r;
}

// ingest::commit answers on a store thread; a test wants the result in line.
inline store::commit_result commit_and_wait(store::ingest& in, const std::shared_ptr<store::pending_message>& m,
                                            store::message_record r, store::classifier c = {}) {
    std::promise<store::commit_result> p;
    auto f = p.get_future();
    in.commit(m, std::move(r), [&p](store::commit_result res) { p.set_value(std::move(res)); }, std::move(c));
    return f.get();
}

inline std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline std::size_t count_files(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    if (!fs::exists(dir)) return 0;
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace relaybait::test
