#pragma once
// Captures what spdlog's default logger writes while it lives ("LEVEL message" lines).
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>
#include <string>

namespace net_test {

class log_capture {
public:
    log_capture() : previous_(spdlog::default_logger()) {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text_);
        sink->set_pattern("%l %v");
        auto logger = std::make_shared<spdlog::logger>("capture", sink);
        logger->set_level(spdlog::level::info);
        spdlog::set_default_logger(logger);
    }
    ~log_capture() { spdlog::set_default_logger(previous_); }
    log_capture(const log_capture&) = delete;
    log_capture& operator=(const log_capture&) = delete;
    std::string text() const { return text_.str(); }

private:
    std::shared_ptr<spdlog::logger> previous_;
    std::ostringstream text_;
};

}  // namespace net_test
