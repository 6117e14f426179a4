#pragma once
// The engine's message_sink on top of the store: message bytes are gathered in a small
// buffer and handed to the store's threads in 64 KB pieces, so a 50 MB message streams to
// disk with flat memory and the event loop never touches the file.
#include <functional>
#include <memory>
#include <string>

#include "smtp/engine.hpp"
#include "store/ingest.hpp"

namespace relaybait::net {

class message_writer final : public smtp::message_sink {
public:
    // The trace headers need the queue id and session facts; begin() asks this for them.
    using header_maker = std::function<std::string(const smtp::envelope&)>;

    message_writer(store::ingest& ingest, header_maker make_headers);
    ~message_writer() override;

    void begin(const smtp::envelope& envelope) override;
    void append(std::string_view bytes) override;
    void discard() override;

    // Hands the buffered tail to the store; returns the message to commit (null if none).
    std::shared_ptr<store::pending_message> finish();
    // Bytes accepted but not yet on disk: the session stops reading while this is high.
    std::uint64_t backlog() const;
    bool active() const { return message_ != nullptr; }
    // Bytes of the current (or just finished) message, trace headers excluded.
    std::uint64_t message_bytes() const { return bytes_; }

private:
    static constexpr std::size_t chunk_size = 64 * 1024;
    store::ingest& ingest_;
    header_maker make_headers_;
    std::shared_ptr<store::pending_message> message_;
    std::string buffer_;
    std::uint64_t bytes_ = 0;
};

}  // namespace relaybait::net
