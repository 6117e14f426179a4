"""Harness for the relay and rules integration tests: a local DNS server (dnsmasq) answering MX
records for test domains, the fake receiving MTA (tests/unit/relay/fake_smtp.py, aiosmtpd),
an MX that answers 451 to every RCPT, and relaybait configured to use them.

Everything listens on loopback on free ports below the ephemeral range; every process started
here is stopped at teardown (the fixtures at the end of the file).

What the tests assume about the product's relay output (events, tables, CLI) lives here too.
"""
from __future__ import annotations

import datetime
import json
import os
import random
import select
import socket
import socketserver
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import relaybait_config, toml_string
from relaybait_testlib import Relaybait, make_message, queue_id_from, source_dir, wait_for

PYTHON = "/usr/bin/python3"  # Debian's, with aiosmtpd (not the pyenv one first on PATH)
DNSMASQ = "/usr/sbin/dnsmasq"
SELF_IP = "127.0.0.1"        # $self.ip of the server under test ([identity] ipv4)
TEMPFAIL_IP = "127.0.0.2"    # where the MX that answers 451 listens

# Domains served by the test DNS. Every MX host is on loopback; the relay's `ports` sends to
# the fake provider's port on each.
SPAMMER_DOMAIN = "spammer-mail.test"
OTHER_DOMAIN = "other.test"
TEMPFIRST_DOMAIN = "tempfirst.test"  # first MX (127.0.0.2) answers 451, second is the provider
FLOOD_DOMAINS = [f"flood{i}.test" for i in range(20)]


# ---------------------------------------------------------------------------------------------
# ports

def _lowest_ephemeral() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(kind: int, host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


_rng = random.Random(os.getpid() ^ time.monotonic_ns())
_handed_out: set[int] = set()


def free_port(tcp_hosts=("127.0.0.1",), udp_hosts=()) -> int:
    """A port free for TCP on every host of tcp_hosts and UDP on udp_hosts, below the
    ephemeral range (a port in it can be taken by any outgoing connection at any time)."""
    top = _lowest_ephemeral() - 1
    for _ in range(500):
        port = _rng.randrange(2000, top)
        if port in _handed_out:
            continue
        # relaybait's own listeners use offset + 25/465/587; staying off those is not needed
        # (they are checked free when the server starts), but keep clear of well-known ranges.
        if all(_bindable(socket.SOCK_STREAM, h, port) for h in tcp_hosts) and \
                all(_bindable(socket.SOCK_DGRAM, h, port) for h in udp_hosts):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found")


# ---------------------------------------------------------------------------------------------
# DNS

def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def _read_name(msg: bytes, offset: int) -> tuple[str, int]:
    labels, jumped, end = [], False, offset
    for _ in range(128):
        length = msg[offset]
        if length & 0xC0 == 0xC0:
            pointer = ((length & 0x3F) << 8) | msg[offset + 1]
            if not jumped:
                end = offset + 2
            jumped, offset = True, pointer
            continue
        if length == 0:
            if not jumped:
                end = offset + 1
            break
        labels.append(msg[offset + 1: offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    return ".".join(labels), end


def dns_query(server: tuple[str, int], name: str, qtype: int = 15, timeout: float = 2.0):
    """One UDP query; returns (rcode, answers) where answers are (type, data) with data the
    (preference, host) pair for MX, the address for A."""
    tid = random.randrange(65536)
    packet = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, server)
        msg = s.recv(65535)
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    assert rid == tid, "DNS reply id mismatch"
    offset = 12
    for _ in range(qd):
        _, offset = _read_name(msg, offset)
        offset += 4
    answers = []
    for _ in range(an):
        _, offset = _read_name(msg, offset)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[offset: offset + 10])
        offset += 10
        rdata = msg[offset: offset + rdlen]
        if rtype == 15:
            pref = struct.unpack(">H", rdata[:2])[0]
            host, _ = _read_name(msg, offset + 2)
            answers.append((15, (pref, host)))
        elif rtype == 1:
            answers.append((1, socket.inet_ntoa(rdata)))
        else:
            answers.append((rtype, rdata))
        offset += rdlen
    return flags & 0xF, answers


class Dnsmasq:
    """dnsmasq on 127.0.0.1:PORT (UDP and TCP) answering for *.test only:
    mx = {domain: [(preference, host), ...]}, hosts = {host: ip}."""

    def __init__(self, workdir: Path, mx: dict[str, list[tuple[int, str]]], hosts: dict[str, str]):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.mx, self.hosts = mx, hosts
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Dnsmasq":
        assert Path(DNSMASQ).exists(), f"{DNSMASQ} is not installed (apt-get install dnsmasq-base)"
        for _ in range(5):
            self.port = free_port(tcp_hosts=("127.0.0.1",), udp_hosts=("127.0.0.1",))
            user = "root" if os.getuid() == 0 else ""
            cmd = [DNSMASQ, f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
                   "--keep-in-foreground", "--no-daemon", "--no-resolv", "--no-hosts", "--no-poll",
                   "--conf-file=/dev/null", "--pid-file=", "--local=/test/", "--log-facility=-"]
            if user:
                cmd.append(f"--user={user}")
            for domain, entries in self.mx.items():
                for pref, host in entries:
                    cmd.append(f"--mx-host={domain},{host},{pref}")
            for host, ip in self.hosts.items():
                cmd.append(f"--host-record={host},{ip}")
            self.log = open(self.workdir / "dnsmasq.log", "wb")
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            first = next(iter(self.mx))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    rcode, answers = dns_query(("127.0.0.1", self.port), first, 15, 0.3)
                    if rcode == 0 and answers:
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
        raise AssertionError("dnsmasq did not start answering; log:\n" +
                             (self.workdir / "dnsmasq.log").read_text(errors="replace")[-3000:])

    def query_mx(self, domain: str) -> list[tuple[int, str]]:
        rcode, answers = dns_query(("127.0.0.1", self.port), domain, 15)
        return sorted(data for t, data in answers if t == 15)

    def query_a(self, host: str) -> list[str]:
        rcode, answers = dns_query(("127.0.0.1", self.port), host, 1)
        return [data for t, data in answers if t == 1]

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
            self.log.close()


def default_dns_records() -> tuple[dict, dict]:
    mx: dict[str, list[tuple[int, str]]] = {}
    hosts: dict[str, str] = {}
    for domain in [SPAMMER_DOMAIN, OTHER_DOMAIN, "ops.test", *FLOOD_DOMAINS]:
        mx[domain] = [(10, f"mx.{domain}")]
        hosts[f"mx.{domain}"] = "127.0.0.1"
    mx[TEMPFIRST_DOMAIN] = [(10, f"mx1.{TEMPFIRST_DOMAIN}"), (20, f"mx2.{TEMPFIRST_DOMAIN}")]
    hosts[f"mx1.{TEMPFIRST_DOMAIN}"] = TEMPFAIL_IP
    hosts[f"mx2.{TEMPFIRST_DOMAIN}"] = "127.0.0.1"
    return mx, hosts


# ---------------------------------------------------------------------------------------------
# the fake provider (receiving MTA)

@dataclass
class Delivery:
    n: int
    data: bytes
    meta: dict

    @property
    def rcpt_tos(self) -> list[str]:
        return self.meta.get("rcpt_tos", [])

    @property
    def mail_from(self) -> str:
        return self.meta.get("mail_from", "")


class FakeProvider:
    """tests/unit/relay/fake_smtp.py on 127.0.0.1:port; every accepted message lands in outdir."""

    def __init__(self, workdir: Path, port: int | None = None, name: str = "provider"):
        self.workdir = Path(workdir)
        self.name = name
        self.outdir = self.workdir / f"{name}-out"
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> "FakeProvider":
        script = source_dir() / "tests" / "unit" / "relay" / "fake_smtp.py"
        assert script.exists(), f"missing {script}"
        if self.port is None:
            self.port = free_port()
        self.log = open(self.workdir / f"{self.name}.log", "wb")
        self.proc = subprocess.Popen([PYTHON, str(script), "--port", str(self.port), "--outdir", str(self.outdir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if b"READY" in line or not line:
                    break
            if self.proc.poll() is not None:
                break
        if b"READY" not in line:
            self.stop()
            raise AssertionError(f"fake provider on port {self.port} did not start; log:\n" +
                                 (self.workdir / f"{self.name}.log").read_text(errors="replace")[-3000:])
        return self

    def deliveries(self) -> list[Delivery]:
        out = []
        for eml in self.outdir.glob("*.eml"):
            n = int(eml.stem)
            meta_file = eml.with_suffix(".json")
            try:
                meta = json.loads(meta_file.read_text())
            except (OSError, ValueError):
                meta = {}
            out.append(Delivery(n, eml.read_bytes(), meta))
        return sorted(out, key=lambda d: d.n)

    def count(self) -> int:
        return len(list(self.outdir.glob("*.eml")))

    def wait_deliveries(self, n: int, timeout: float = 20, what: str = "") -> list[Delivery]:
        wait_for(lambda: self.count() >= n, timeout,
                 what=what or f"{n} message(s) at the fake provider {self.name} (port {self.port})")
        return self.deliveries()

    def stop(self):
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        self.log.close()


# ---------------------------------------------------------------------------------------------
# an MX that answers 451 to every RCPT (the first MX of TEMPFIRST_DOMAIN)

class TempfailMx:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.connections = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 30

            def handle(self):
                with outer.lock:
                    outer.connections += 1
                w = self.wfile
                w.write(b"220 tempfail.test ESMTP\r\n")
                while True:
                    line = self.rfile.readline(4096)
                    if not line:
                        return
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        w.write(b"250 tempfail.test\r\n")
                    elif verb == b"RCPT":
                        w.write(b"451 4.7.1 Greylisted, try again later\r\n")
                    elif verb == b"QUIT":
                        w.write(b"221 2.0.0 Bye\r\n")
                        return
                    elif verb == b"DATA":
                        w.write(b"554 5.5.1 No valid recipients\r\n")
                    else:
                        w.write(b"250 2.0.0 Ok\r\n")

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# relaybait configured for relaying

def relay_toml(dns: str, ports: list[int], relay: dict | None = None, rules_file: str | Path | None = None,
               limits: dict | None = None, auth_policy: str = "accept-all") -> str:
    """A relaybait TOML: $self.ip = 127.0.0.1 (no interface addresses), the relay using the test
    DNS and delivering to `ports`, fast polling and retries, caps from `relay`. Every MX of the
    test DNS resolves to a loopback address, which the relay refuses unless
    allow_private_destinations (on here; test_mx_on_a_private_address_is_not_relayed turns it off)."""
    settings = {"dns_servers": [dns], "ports": ports, "poll_interval_ms": 200, "retry_base_seconds": 1,
                "retry_max_seconds": 2, "dns_timeout_ms": 1000, "connect_timeout_seconds": 5,
                "command_timeout_seconds": 10, "starttls": False, "allow_private_destinations": True}
    settings.update(relay or {})
    lines = ["[identity]", f'ipv4 = ["{SELF_IP}"]', "interface_addresses = false", ""]
    if rules_file is not None:
        lines += ["[rules]", f"file = {toml_string(str(rules_file))}", ""]
    if limits:
        lines += ["[limits]"] + [f"{k} = {_toml_value(v)}" for k, v in limits.items()] + [""]
    lines += ["[relay]"] + [f"{k} = {_toml_value(v)}" for k, v in settings.items()]
    return relaybait_config(auth_policy=auth_policy, extra="\n".join(lines))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return toml_string(str(v))


# Caps that never get in the way of a test about another cap.
HIGH_CAPS = {"daily": 1000, "per_recipient_daily": 1000, "per_sender_daily": 1000, "per_client_ip_daily": 1000,
             "per_domain_daily": 1000}


@dataclass
class RelayEnv:
    """One test's relay world: the shared DNS, a fresh provider (+ the 451 MX on its port)."""
    workdir: Path
    dns: Dnsmasq
    provider: FakeProvider
    tempfail: TempfailMx
    make_server: object
    extra: list = field(default_factory=list)

    def config(self, relay: dict | None = None, rules_file=None, limits: dict | None = None, **kw) -> str:
        caps = dict(HIGH_CAPS)
        caps.update(relay or {})
        return relay_toml(self.dns.server, [self.provider.port], caps, rules_file, limits, **kw)

    def server(self, relay: dict | None = None, rules_file=None, limits: dict | None = None,
               extra_args: list[str] | None = None, start: bool = True, **kw) -> Relaybait:
        srv = self.make_server(self.config(relay, rules_file, limits, **kw), start=False)
        if extra_args:
            srv.extra_args = list(extra_args)
        if start:
            srv.start()
        return srv

    def second_provider(self, name: str = "ops") -> FakeProvider:
        p = FakeProvider(self.workdir, name=name).start()
        self.extra.append(p)
        return p


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory):
    mx, hosts = default_dns_records()
    d = Dnsmasq(tmp_path_factory.mktemp("dns"), mx, hosts).start()
    yield d
    d.stop()


@pytest.fixture
def relay_env(tmp_path, dns_server, make_server):
    port = free_port(tcp_hosts=("127.0.0.1", TEMPFAIL_IP))
    provider = FakeProvider(tmp_path, port).start()
    tempfail = TempfailMx(TEMPFAIL_IP, port)
    env = RelayEnv(tmp_path, dns_server, provider, tempfail, make_server)
    yield env
    # make_server's teardown (SIGTERM, exit 0) runs after this; stopping the provider first
    # only makes pending deliveries fail, never hang.
    for p in env.extra:
        p.stop()
    tempfail.stop()
    provider.stop()


# ---------------------------------------------------------------------------------------------
# sending

def probe_message(token: str, subject: str | None = None, body: bytes | None = None,
                  sender: str = "spammer@spammer-mail.test", to: str = f"user@{SPAMMER_DOMAIN}",
                  extra_headers: bytes = b"") -> bytes:
    """A probe: the honeypot's IP in the Subject (default), a token to find it again."""
    subject = subject if subject is not None else f"Relay test {SELF_IP} {token}"
    body = body if body is not None else f"probe {token}\r\n".encode()
    return make_message(subject, body=body, sender=sender, to=to, extra_headers=extra_headers)


def spam_message(token: str, sender: str = "bulk@spam-sender.test", to: str = f"user@{SPAMMER_DOMAIN}") -> bytes:
    return make_message(f"Cheap watches {token}", body=f"Buy now, {token}.\r\nUnsubscribe below.\r\n".encode(),
                        sender=sender, to=to)


def send(server: Relaybait, msg: bytes, rcpts: list[str] | str, sender: str = "spammer@spammer-mail.test",
         port: str = "smtp", login: tuple[str, str] | None = None, eightbit: bool = False) -> str:
    """Sends one message with smtplib; returns the queue id of the 250 (asserts 250)."""
    import smtplib
    rcpts = [rcpts] if isinstance(rcpts, str) else rcpts
    with smtplib.SMTP("127.0.0.1", server.ports[port], timeout=30) as s:
        s.ehlo("client.spammer-mail.test")
        if login:
            s.login(*login)
        opts = ["BODY=8BITMIME"] if eightbit else []
        s.mail(sender, opts)
        for r in rcpts:
            code, resp = s.rcpt(r)
            assert code == 250, f"RCPT {r}: {code} {resp!r}"
        code, resp = s.data(msg)
        assert code == 250, f"DATA: {code} {resp!r}"
    return queue_id_from(resp)


def stored(server: Relaybait, qid: str, timeout: float = 10) -> dict:
    return wait_for(lambda: server.message_by_queue_id(qid), timeout, what=f"message {qid} in the DB")


# ---------------------------------------------------------------------------------------------
# reading the relay's output (the schema knowledge, in one place)

RELAY_EVENTS = ("relay.queued", "relay.refused", "relay.deferred", "relay.delivered", "relay.failed")


def _ids_of(row: dict) -> set:
    return {row["queue_id"], str(row["id"]), row["id"]}


def relay_events(server: Relaybait, row: dict | None = None, eventids=RELAY_EVENTS) -> list[dict]:
    """relay.* events (of one stored message when `row` is given), in log order."""
    ids = _ids_of(row) if row else None
    out = []
    for e in server.events():
        if e.get("eventid") not in eventids:
            continue
        if ids is not None and e.get("message_id") not in ids:
            continue
        out.append(e)
    return out


def wait_relay_event(server: Relaybait, row: dict, eventid: str, timeout: float = 20) -> dict:
    def find():
        evs = [e for e in relay_events(server, row) if e["eventid"] == eventid]
        return evs[0] if evs else None
    try:
        return wait_for(find, timeout, 0.1, what=f"{eventid} for message {row['queue_id']}")
    except AssertionError as e:
        raise AssertionError(f"{e}\nrelay events of the message: {relay_events(server, row)}\n"
                             f"all relay events: {relay_events(server)[-20:]}\nserver log:\n{server.log_tail(3000)}")


def relay_outcome(server: Relaybait, row: dict, timeout: float = 20) -> dict:
    """The message's relay.queued or relay.refused event (the decision)."""
    def find():
        evs = [e for e in relay_events(server, row, ("relay.queued", "relay.refused"))]
        return evs[0] if evs else None
    try:
        return wait_for(find, timeout, 0.1, what=f"the relay decision on message {row['queue_id']}")
    except AssertionError as e:
        raise AssertionError(f"{e}\nrule events: {rule_events(server, row)}\n"
                             f"row: folder={row.get('folder')!r} rule={row.get('rule')!r}\n"
                             f"relay events: {relay_events(server)[-10:]}\nserver log:\n{server.log_tail(3000)}")


def assert_refused(server: Relaybait, row: dict, cap: str, timeout: float = 20):
    ev = relay_outcome(server, row, timeout)
    assert ev["eventid"] == "relay.refused", f"expected relay.refused (cap {cap}), got {ev}"
    assert ev.get("cap") == cap, f"expected the cap {cap!r} to be named, got {ev}"
    return ev


def rule_events(server: Relaybait, row: dict | None = None) -> list[dict]:
    out = [e for e in server.events() if e.get("eventid") == "rule.match"]
    if row is not None:
        out = [e for e in out if e.get("queue_id") == row["queue_id"]]
    return out


def queue_rows(server: Relaybait) -> list[dict]:
    return server.query("SELECT * FROM relay_queue ORDER BY id")


def attempts_of(server: Relaybait, queue_row_id: int) -> list[dict]:
    return server.query("SELECT * FROM relay_attempts WHERE queue_id = ? ORDER BY id", (queue_row_id,))


def queue_rows_of(server: Relaybait, row: dict) -> list[dict]:
    rows = queue_rows(server)
    ids = {str(i) for i in _ids_of(row)}
    return [r for r in rows if str(r["message_id"]) in ids]


def utc_today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def headers_and_body(data: bytes) -> tuple[list[tuple[str, str]], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no header/body separator in {data[:300]!r}"
    headers = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1] = (headers[-1][0], headers[-1][1] + line.decode("utf-8", "replace"))
        else:
            name, _, value = line.partition(b":")
            headers.append((name.decode("ascii", "replace"), value.strip().decode("utf-8", "replace")))
    return headers, body


def cli(server: Relaybait, *args: str, config: bool = True, check: bool = False, timeout: float = 60):
    """relaybait ARGS --data-dir DATA [--config CFG]; returns (rc, stdout+stderr text, proc)."""
    extra = ["--config", str(server.config_file)] if config else []
    proc = server.cli(*args, *extra, check=check, timeout=timeout)
    text = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    return proc.returncode, text, proc
