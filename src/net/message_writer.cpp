#include "net/message_writer.hpp"

namespace relaybait::net {

message_writer::message_writer(store::ingest& ingest, header_maker make_headers)
    : ingest_(ingest), make_headers_(std::move(make_headers)) {}

message_writer::~message_writer() { discard(); }

void message_writer::begin(const smtp::envelope& envelope) {
    discard();
    bytes_ = 0;
    message_ = ingest_.begin_message("", make_headers_(envelope));
}

void message_writer::append(std::string_view bytes) {
    if (!message_) return;
    bytes_ += bytes.size();
    buffer_.append(bytes);
    if (buffer_.size() >= chunk_size) {
        ingest_.append(message_, std::move(buffer_));
        buffer_ = std::string();
    }
}

void message_writer::discard() {
    if (message_) ingest_.abort(message_);
    message_.reset();
    std::string().swap(buffer_);
}

std::shared_ptr<store::pending_message> message_writer::finish() {
    if (message_ && !buffer_.empty()) ingest_.append(message_, std::move(buffer_));
    std::string().swap(buffer_);
    return std::exchange(message_, nullptr);
}

std::uint64_t message_writer::backlog() const {
    return message_ ? ingest_.unwritten_bytes(message_) + buffer_.size() : 0;
}

}  // namespace relaybait::net
