# All dependencies come from Debian 12 packages (scripts/install-deps.sh).
find_package(Threads REQUIRED)
find_package(Boost 1.81 EXACT REQUIRED COMPONENTS json)
find_package(OpenSSL 3 REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(TOMLPLUSPLUS REQUIRED IMPORTED_TARGET tomlplusplus)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
pkg_check_modules(GMIME REQUIRED IMPORTED_TARGET gmime-3.0)
pkg_check_modules(CARES REQUIRED IMPORTED_TARGET libcares)

# Boost headers are heavy: one precompiled header shared by the targets that use Asio.
add_library(relaybait_boost_pch INTERFACE)
target_link_libraries(relaybait_boost_pch INTERFACE Boost::headers Boost::json OpenSSL::SSL OpenSSL::Crypto Threads::Threads)
