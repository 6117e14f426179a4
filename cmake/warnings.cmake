# Every target of the project compiles with warnings as errors.
add_library(relaybait_warnings INTERFACE)
target_compile_options(relaybait_warnings INTERFACE -Wall -Wextra -Werror -Wno-missing-field-initializers)
# g++ 12 reports false positives inside libstdc++'s std::string at -O2 (GCC PR 105329, 105651).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(relaybait_warnings INTERFACE -Wno-array-bounds -Wno-stringop-overflow -Wno-stringop-overread -Wno-restrict)
endif()
# Asio without its deprecated interfaces and without the old stackful coroutines.
target_compile_definitions(relaybait_warnings INTERFACE
  BOOST_ASIO_NO_DEPRECATED BOOST_ASIO_DISABLE_BOOST_COROUTINE)

if(RELAYBAIT_SANITIZE)
  target_compile_options(relaybait_warnings INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(relaybait_warnings INTERFACE -fsanitize=address,undefined)
endif()

# Coverage-guided fuzzing (clang only): every library is instrumented, the fuzz targets link libFuzzer.
if(RELAYBAIT_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "RELAYBAIT_FUZZ needs clang++ (use the 'fuzz' preset)")
  endif()
  target_compile_options(relaybait_warnings INTERFACE -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  target_link_options(relaybait_warnings INTERFACE -fsanitize=address,undefined)
endif()
