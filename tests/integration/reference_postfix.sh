#!/usr/bin/env bash
# A throwaway copy of the reference Postfix 3.7 (the persona relaybait imitates), on loopback
# ports 2525 (smtp), 2465 (smtps), 2587 (submission), built from ../shared/personas/postfix-3.7/config.
# Used to validate the transcript replay harness against the real thing:
#
#   tests/integration/reference_postfix.sh start
#   REPLAY_TARGET=127.0.0.1:2525,2465,2587 /usr/bin/python3 -m pytest -q -p no:cacheprovider \
#       tests/integration/test_transcripts.py
#   tests/integration/reference_postfix.sh stop
#
# Needs root (Postfix's master runs as root and drops to the postfix user) and the packages
# postfix, sasl2-bin, libsasl2-modules, openssl (scripts/install-deps.sh installs them).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
persona="${PERSONA_DIR:-$here/../../../shared/personas/postfix-3.7/config}"
root=/tmp/postfixref   # fixed: the persona's main.cf names these paths

stop() {
  if [[ -f $root/etc/main.cf ]]; then
    postfix -c "$root/etc" stop 2>/dev/null || true
    for _ in $(seq 50); do
      postfix -c "$root/etc" status >/dev/null 2>&1 || break
      sleep 0.1
    done
  fi
}

start() {
  [[ -d $persona ]] || { echo "persona config not found: $persona" >&2; exit 1; }
  for tool in postfix postalias saslpasswd2 openssl; do
    command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps.sh" >&2; exit 1; }
  done
  stop
  rm -rf "$root"
  mkdir -p "$root"/{etc/sasl,spool,data,log,tls,sasldb}
  cp "$persona/main.cf" "$persona/master.cf" "$persona/aliases" "$root/etc/"
  cp "$persona/sasl-smtpd.conf" "$root/etc/sasl/smtpd.conf"
  postalias "$root/etc/aliases"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mx1.example.net" \
    -addext "subjectAltName=DNS:mx1.example.net" \
    -keyout "$root/tls/key.pem" -out "$root/tls/cert.pem" 2>/dev/null
  chmod 600 "$root/tls/key.pem"
  # Cyrus uses the machine's hostname as the default realm; register both realms.
  for realm in "$(hostname)" mx1.example.net; do
    printf '%s' 'S3cretPass!' | saslpasswd2 -p -c -f "$root/sasldb/sasldb2" -u "$realm" testuser
  done
  chown -R postfix:postfix "$root/sasldb" "$root/data"
  chmod 750 "$root/sasldb"; chmod 640 "$root/sasldb/sasldb2"
  chown root:root "$root/spool"
  postfix -c "$root/etc" check
  postfix -c "$root/etc" start
  for port in 2525 2465 2587; do
    for _ in $(seq 100); do
      (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
      sleep 0.1
    done
  done
  echo "reference Postfix up on 127.0.0.1:2525,2465,2587 (log: $root/log/maillog)"
}

case "${1:-}" in
  start) start ;;
  stop) stop; echo "reference Postfix stopped" ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
