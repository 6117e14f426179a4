#pragma once
// Shared fakes for the SMTP engine tests.
#include <string>
#include <vector>

#include "smtp/engine.hpp"

namespace relaybait::smtp::testing {

struct recording_sink : message_sink {
    std::vector<std::string> finished;  // messages that were begun and not discarded (content so far)
    std::string current;
    bool open = false;
    int begins = 0, discards = 0;
    envelope last_envelope;
    void begin(const envelope& env) override {
        open = true;
        current.clear();
        ++begins;
        last_envelope = env;
    }
    void append(std::string_view bytes) override { current.append(bytes); }
    void discard() override {
        open = false;
        current.clear();
        ++discards;
    }
    std::string take() {
        open = false;
        std::string out;
        out.swap(current);
        finished.push_back(out);
        return out;
    }
};

struct fixed_environment : environment {
    std::uint64_t counter = 2735524914ULL;
    std::chrono::system_clock::time_point now() override {
        return std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
    }
    std::uint64_t random() override { return counter++; }
};

// Drives an engine the way the network layer does; collects the reply text.
struct driver {
    engine_config config;
    recording_sink sink;
    fixed_environment env;
    std::unique_ptr<engine> eng;
    bool closed = false;
    bool tls_pending = false;
    std::vector<reply> all_replies;
    std::vector<observation> observations;
    std::string queue_id = "QUEUEID";

    explicit driver(listener_kind kind = listener_kind::smtp, engine_config cfg = {}) : config(std::move(cfg)) {
        connection_facts f;
        f.listener = kind;
        f.local_hostname = "mx1.example.net";
        f.peer_ip = "192.0.2.1";
        f.local_ip = "127.0.0.1";
        f.tls_active = kind == listener_kind::smtps;
        eng = std::make_unique<engine>(config, f, sink, env);
    }

    // When set, commits are answered with this verdict (the rules at DATA end).
    std::optional<stage_verdict> data_verdict;

    // Feeds like the network layer: serves commit requests, stops at start_tls / close.
    std::string send(std::string_view input) {
        std::string text;
        while (!closed && !tls_pending) {
            output out;
            eng->feed(input, out);
            collect(out, text);
            input.remove_prefix(out.consumed);
            if (out.next == request::commit_message) {
                sink.take();
                output done;
                if (data_verdict)
                    eng->message_committed(queue_id, *data_verdict, done);
                else
                    eng->message_committed(queue_id, done);
                collect(done, text);
                if (done.next == request::close) closed = true;
                continue;
            }
            if (out.next == request::close) closed = true;
            if (out.next == request::start_tls) tls_pending = true;
            if (input.empty() || out.next == request::none) break;
        }
        return text;
    }
    std::string send_bytewise(std::string_view input) {
        std::string text;
        for (char c : input) text += send(std::string_view(&c, 1));
        return text;
    }
    void start_tls() {
        output out;
        eng->tls_started(tls_facts{"TLSv1.3", "TLS_AES_256_GCM_SHA384"}, out);
        tls_pending = false;
    }
    void collect(output& out, std::string& text) {
        for (auto& r : out.replies) {
            text += r.text;
            all_replies.push_back(r);
        }
        for (auto& o : out.observations) observations.push_back(o);
    }
};

}  // namespace relaybait::smtp::testing
