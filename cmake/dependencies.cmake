# All dependencies come from Debian 12 packages (scripts/install-deps.sh).
#
# RELAYBAIT_STATIC_DEPS (ON in the release preset): link every dependency Debian ships as a .a
# statically (OpenSSL, SQLite, GMime with GLib/GpgME, RE2, c-ares, Boost.JSON, libstdc++,
# libgcc) and use spdlog, fmt and toml++ without their shared libraries; glibc and libmount stay
# shared. Each shared library is relocated at start and every page fault in it maps the 64 KB
# around it: the 30 libraries cost 14.7 MB of idle RSS, the static link about 5 MB less
# (measured 18.0 -> 13.2 MB VmRSS). See cmake/static_deps.cmake.
option(RELAYBAIT_STATIC_DEPS "Link the dependencies statically (glibc and libmount stay shared)" OFF)

# A build directory switched between the two: forget the libraries found for the other one
# (FindOpenSSL and FindSQLite3 keep them in the cache; FindBoost notices by itself).
if(RELAYBAIT_STATIC_DEPS)
  set(relaybait_link_mode static)
else()
  set(relaybait_link_mode shared)
endif()
set(relaybait_found_mode "$CACHE{RELAYBAIT_LINK_MODE_FOUND}")
if(relaybait_found_mode STREQUAL "")
  set(relaybait_found_mode shared)  # directories configured before the option existed
endif()
if(NOT relaybait_found_mode STREQUAL relaybait_link_mode)
  unset(OPENSSL_CRYPTO_LIBRARY CACHE)
  unset(OPENSSL_SSL_LIBRARY CACHE)
  unset(SQLite3_LIBRARY CACHE)
endif()
set(RELAYBAIT_LINK_MODE_FOUND ${relaybait_link_mode} CACHE INTERNAL "shared or static: what the cached library paths are")

find_package(Threads REQUIRED)
if(RELAYBAIT_STATIC_DEPS)
  set(Boost_USE_STATIC_LIBS ON)
  set(OPENSSL_USE_STATIC_LIBS TRUE)
endif()
find_package(Boost 1.81 EXACT REQUIRED COMPONENTS json)
find_package(OpenSSL 3 REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(CLI11 REQUIRED)
if(RELAYBAIT_STATIC_DEPS)
  include(${CMAKE_CURRENT_LIST_DIR}/static_deps.cmake)
else()
  find_package(SQLite3 REQUIRED)
  pkg_check_modules(TOMLPLUSPLUS REQUIRED IMPORTED_TARGET tomlplusplus)
  find_package(spdlog REQUIRED)
  pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
  pkg_check_modules(GMIME REQUIRED IMPORTED_TARGET gmime-3.0)
  pkg_check_modules(CARES REQUIRED IMPORTED_TARGET libcares)
  pkg_check_modules(IDN2 REQUIRED IMPORTED_TARGET libidn2)
endif()

# Boost headers are heavy: one precompiled header shared by the targets that use Asio.
add_library(relaybait_boost_pch INTERFACE)
target_link_libraries(relaybait_boost_pch INTERFACE Boost::headers Boost::json OpenSSL::SSL OpenSSL::Crypto Threads::Threads)
