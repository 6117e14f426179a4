#!/usr/bin/env bash
# Installs every build and test dependency of relaybait on Debian 12 (bookworm).
# Idempotent: packages already installed are left alone; when nothing is missing the script
# does not touch the network at all (set RELAYBAIT_DEPS_FORCE=1 to always `apt-get update`
# and reinstall/upgrade). Works as root, or as a user with sudo.
#
# Postfix is installed only for its test tools (smtp-sink, smtp-source, and as the reference
# MTA the transcript tests can replay against): it is preseeded to "No configuration" and is
# never left running or bound to port 25. No service is started by this script.
set -euo pipefail

if [[ ${EUID:-$(id -u)} -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo --preserve-env=RELAYBAIT_DEPS_FORCE,DEBIAN_FRONTEND "$0" "$@"
  fi
  echo "install-deps.sh: must run as root (or with sudo available)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

packages=(
  # toolchain and build
  build-essential cmake ninja-build ccache pkg-config g++ clang git ca-certificates
  libclang-rt-14-dev            # libFuzzer / sanitizer runtimes for clang
  # libraries
  libboost1.81-all-dev          # Asio, Beast, JSON
  libssl-dev
  libsqlite3-dev sqlite3
  libtomlplusplus-dev
  libspdlog-dev
  libcli11-dev
  libgtest-dev libgmock-dev googletest
  libc-ares-dev
  libgmime-3.0-dev libre2-dev
  libidn2-dev                   # IDNA2008: the relay's caps and MX lookups use A-labels
  # the static link of GMime (RELAYBAIT_STATIC_DEPS, release preset) needs the .a files of its
  # private dependencies, which libgmime-3.0-dev does not pull in
  libgpgme-dev libassuan-dev libgpg-error-dev libunistring-dev
  libmaxminddb-dev
  libpq-dev
  libsodium-dev
  libedit-dev
  # integration test tools
  python3 python3-pytest python3-aiosmtpd
  swaks libnet-ssleay-perl libio-socket-ssl-perl openssl curl nmap
  dovecot-imapd
  postfix sasl2-bin libsasl2-modules   # smtp-sink/smtp-source; reference Postfix + sasldb
  dnsmasq-base procps iproute2 debconf-utils
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 && "${RELAYBAIT_DEPS_FORCE:-0}" != 1 ]]; then
  echo "install-deps.sh: all ${#packages[@]} packages already installed"
else
  echo "install-deps.sh: installing: ${missing[*]:-${packages[*]}}"
  # Postfix: no questions, no configuration (so it cannot start by itself).
  if command -v debconf-set-selections >/dev/null 2>&1; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  fi
  # Keep package scripts from starting services (postfix, dovecot) during the install.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
  fi
  trap '[[ $created_policy == 1 ]] && rm -f "$policy"' EXIT
  apt-get update
  # debconf-utils first, so the preseed above works on a really fresh system.
  if ! command -v debconf-set-selections >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends debconf-utils
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get install -y --no-install-recommends "${packages[@]}"
fi

# Never leave a system Postfix running or holding port 25.
if [[ -f /etc/postfix/main.cf ]] && postfix status >/dev/null 2>&1; then
  echo "install-deps.sh: stopping the system Postfix"
  postfix stop || true
fi
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  systemctl disable --now postfix.service >/dev/null 2>&1 || true
fi

echo "install-deps.sh: done"
