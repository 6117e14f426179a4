# RELAYBAIT_STATIC_DEPS=ON: defines the same targets as the shared configuration
# (SQLite::SQLite3, PkgConfig::RE2, PkgConfig::GMIME, PkgConfig::CARES, PkgConfig::TOMLPLUSPLUS,
# spdlog::spdlog; OpenSSL and Boost.JSON are found static by dependencies.cmake), backed by the
# Debian .a files, so src/ and tests/ link the same names either way. What stays shared: glibc
# (libc, libm, ld.so: a static glibc cannot load the NSS modules getaddrinfo needs, nor gconv
# for iconv) and libmount with its dependencies (GIO needs it; Debian ships no libmount.a).
#
# The .a files come from the -dev packages in scripts/install-deps.sh (GMime's static link also
# needs libgpgme-dev, libassuan-dev and libunistring-dev, which the shared link does not).

# Every function and object in its own section so the linker drops what nothing references
# (the static libraries bring whole objects; our own code goes function by function).
add_compile_options(-ffunction-sections -fdata-sections)
# --as-needed: a shared library nothing references (a dependency listed by pkg-config whose
# objects the static link did not pull) is not loaded at run time.
add_link_options(-static-libstdc++ -static-libgcc LINKER:--gc-sections LINKER:--as-needed)
# The executable stays PIE (ASLR: it parses hostile input), but its ~30,000 relative
# relocations (OpenSSL's and GLib's tables of function pointers) are packed as DT_RELR
# (binutils >= 2.38, glibc >= 2.36): a 9 KB table instead of 720 KB that ld.so reads at start.
include(CheckLinkerFlag)
check_linker_flag(CXX "LINKER:-z,pack-relative-relocs" RELAYBAIT_HAVE_RELR)
if(RELAYBAIT_HAVE_RELR)
  add_link_options(LINKER:-z,pack-relative-relocs)
endif()

set(relaybait_glibc_libraries pthread m dl rt c)

# pkg-config --static for `module` (one or more), each library as its .a when Debian ships one.
# A library without one (libmount, which GIO needs) is linked shared, and so is everything it
# depends on (libblkid, libselinux, libpcre2-8): one copy of each in the process, not a static
# copy in the executable next to the shared one the library loads.
function(relaybait_static_pkg prefix module)
  pkg_check_modules(${prefix} REQUIRED ${module})
  set(shared)
  foreach(name IN LISTS ${prefix}_STATIC_LIBRARIES)
    if(name IN_LIST relaybait_glibc_libraries)
      continue()
    endif()
    find_library(RELAYBAIT_STATIC_LIB_${name} NAMES lib${name}.a HINTS ${${prefix}_STATIC_LIBRARY_DIRS})
    if(NOT RELAYBAIT_STATIC_LIB_${name})
      execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --static --libs-only-l ${name}
                      OUTPUT_VARIABLE closure OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE failed)
      if(failed)
        set(closure -l${name})
      endif()
      separate_arguments(closure)
      list(TRANSFORM closure REPLACE "^-l" "")
      list(APPEND shared ${closure})
    endif()
  endforeach()
  set(archives)
  set(system)
  foreach(name IN LISTS ${prefix}_STATIC_LIBRARIES)
    if(name IN_LIST relaybait_glibc_libraries)
      list(APPEND system ${name})
    elseif(name IN_LIST shared)
      find_library(RELAYBAIT_SHARED_LIB_${name} NAMES ${name} HINTS ${${prefix}_STATIC_LIBRARY_DIRS} REQUIRED)
      list(APPEND archives ${RELAYBAIT_SHARED_LIB_${name}})
    else()
      list(APPEND archives ${RELAYBAIT_STATIC_LIB_${name}})
    endif()
  endforeach()
  list(REMOVE_DUPLICATES archives)
  list(REMOVE_DUPLICATES system)
  if(shared)
    list(REMOVE_DUPLICATES shared)
    list(REMOVE_ITEM shared ${relaybait_glibc_libraries})
    message(STATUS "RELAYBAIT_STATIC_DEPS: ${module}: shared (no .a, or needed by one without): ${shared}")
  endif()
  list(JOIN archives "," group)
  add_library(PkgConfig::${prefix} INTERFACE IMPORTED GLOBAL)
  # RESCAN (--start-group/--end-group): GLib, GIO and GObject reference each other.
  set_target_properties(PkgConfig::${prefix} PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${${prefix}_STATIC_INCLUDE_DIRS}"
    INTERFACE_COMPILE_OPTIONS "${${prefix}_STATIC_CFLAGS_OTHER}"
    INTERFACE_LINK_OPTIONS "${${prefix}_STATIC_LDFLAGS_OTHER}"
    INTERFACE_LINK_LIBRARIES "$<LINK_GROUP:RESCAN,${group}>;${system};Threads::Threads")
endfunction()

relaybait_static_pkg(RE2 re2)
# gmime-3.0.pc names -lgpgme and -lidn2 but not what their .a files need (libassuan,
# libunistring): ask for their modules too.
relaybait_static_pkg(GMIME "gmime-3.0;gpgme;libidn2")
relaybait_static_pkg(CARES libcares)
relaybait_static_pkg(IDN2 libidn2)

find_library(SQLite3_LIBRARY NAMES libsqlite3.a REQUIRED)
find_package(SQLite3 REQUIRED)
set_property(TARGET SQLite::SQLite3 APPEND PROPERTY INTERFACE_LINK_LIBRARIES m ${CMAKE_DL_LIBS} Threads::Threads)

# spdlog and fmt header-only (Debian ships them as shared libraries only).
find_package(fmt REQUIRED)
add_library(spdlog::spdlog INTERFACE IMPORTED GLOBAL)
set_target_properties(spdlog::spdlog PROPERTIES
  INTERFACE_COMPILE_DEFINITIONS SPDLOG_FMT_EXTERNAL
  INTERFACE_LINK_LIBRARIES "fmt::fmt-header-only;Threads::Threads")

# toml++ (shared only in Debian): its implementation compiled once, here.
pkg_check_modules(TOMLPLUSPLUS_PC REQUIRED tomlplusplus)
set(relaybait_toml_impl ${CMAKE_BINARY_DIR}/generated/tomlplusplus_impl.cpp)
file(CONFIGURE OUTPUT ${relaybait_toml_impl} CONTENT "#define TOML_IMPLEMENTATION\n#include <toml++/toml.h>\n")
add_library(relaybait_tomlplusplus STATIC ${relaybait_toml_impl})
target_include_directories(relaybait_tomlplusplus SYSTEM PUBLIC ${TOMLPLUSPLUS_PC_INCLUDE_DIRS})
target_compile_definitions(relaybait_tomlplusplus PUBLIC TOML_HEADER_ONLY=0)
add_library(PkgConfig::TOMLPLUSPLUS ALIAS relaybait_tomlplusplus)
