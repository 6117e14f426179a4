#pragma once
// Shared by the libFuzzer target and the deterministic gtest: feeds arbitrary bytes, split at
// data-chosen points, into an engine the way the network layer would, checking invariants.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtp/engine.hpp"

namespace relaybait::smtp::fuzz {

struct null_sink : message_sink {
    bool open = false;
    void begin(const envelope&) override { open = true; }
    void append(std::string_view) override {
        if (!open) std::abort();  // appends only between begin and commit/discard
    }
    void discard() override { open = false; }
};

struct counter_environment : environment {
    std::uint64_t n = 1;
    std::chrono::system_clock::time_point now() override { return std::chrono::system_clock::time_point(std::chrono::seconds(n)); }
    std::uint64_t random() override { return n++ * 2654435761u; }
};

// Returns false when an invariant is broken.
inline bool run_one(std::string_view data) {
    if (data.empty()) return true;
    const auto selector = static_cast<unsigned char>(data[0]);
    data.remove_prefix(1);
    engine_config cfg;
    cfg.bounds.line_length = 2048;
    cfg.bounds.message_size = 4096;
    cfg.bounds.commands_per_session = 500;
    cfg.auth.policy = static_cast<auth_policy::mode>(selector % 4);
    cfg.auth.accepted_pairs = {{"u", "p"}};
    connection_facts facts;
    facts.listener = static_cast<listener_kind>((selector / 4) % 3);
    facts.tls_active = facts.listener == listener_kind::smtps;
    facts.local_hostname = "mx1.example.net";
    facts.peer_ip = "192.0.2.1";
    null_sink sink;
    counter_environment env;
    engine e(cfg, facts, sink, env);
    std::size_t step = 1 + (selector >> 5);  // split size
    std::size_t pos = 0;
    std::size_t rounds = 0;
    while (pos < data.size() && ++rounds < 100000) {
        std::size_t n = std::min(step, data.size() - pos);
        std::string_view chunk = data.substr(pos, n);
        output out;
        e.feed(chunk, out);
        if (out.consumed > chunk.size()) return false;
        for (const auto& r : out.replies) {
            if (r.text.size() < 2 || r.text.substr(r.text.size() - 2) != "\r\n") return false;
            if (r.text.size() > 4096) return false;
        }
        switch (out.next) {
        case request::close: return true;
        case request::start_tls: {
            if (out.consumed != chunk.size()) return false;
            output tls;
            e.tls_started({"TLSv1.3", "TLS_AES_128_GCM_SHA256"}, tls);
            pos += n;
            break;
        }
        case request::commit_message: {
            output done;
            if (pos % 7 == 0)
                e.message_failed(done);
            else
                e.message_committed("ABCDEF", done);
            if (done.replies.size() != 1) return false;
            pos += out.consumed;
            break;
        }
        case request::none:
            if (out.consumed != chunk.size()) return false;
            pos += n;
            break;
        }
        if (e.errors() > cfg.bounds.hard_error_limit + 2) return false;
    }
    return true;
}

}  // namespace relaybait::smtp::fuzz
