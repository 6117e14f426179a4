# Every target of the project compiles with warnings as errors.
add_library(relaybait_warnings INTERFACE)
target_compile_options(relaybait_warnings INTERFACE -Wall -Wextra -Werror -Wno-missing-field-initializers)
# Boost.Asio coroutines need this flag on g++ 12 only for clarity; C++20 enables them.
target_compile_definitions(relaybait_warnings INTERFACE
  BOOST_ASIO_NO_DEPRECATED BOOST_ASIO_DISABLE_BOOST_COROUTINE)

if(RELAYBAIT_SANITIZE)
  target_compile_options(relaybait_warnings INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(relaybait_warnings INTERFACE -fsanitize=address,undefined)
endif()
