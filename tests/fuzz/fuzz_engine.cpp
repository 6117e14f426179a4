// libFuzzer target for the SMTP engine: clang++ -fsanitize=fuzzer,address.
#include <cstdint>
#include <cstdlib>

#include "engine_fuzz_driver.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (!relaybait::smtp::fuzz::run_one(std::string_view(reinterpret_cast<const char*>(data), size))) std::abort();
    return 0;
}
