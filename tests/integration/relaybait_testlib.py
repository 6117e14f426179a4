"""Shared helpers for the integration tests: run the real relaybait binary on loopback and
read back what it stored (Maildir, SQLite, events.jsonl, CLI).

Every assumption about the stored schema (table and column names, CLI JSON shape, event
fields) lives here, so a schema change is a one-place fix.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import time
from pathlib import Path

HOSTNAME = "mx1.example.net"
BASE_PORTS = {"smtp": 25, "smtps": 465, "submission": 587}
TRACE_HEADER_NAMES = ("received", "x-")  # what relaybait prepends (Received + X-... headers)


def source_dir() -> Path:
    env = os.environ.get("RELAYBAIT_SOURCE_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def binary_path() -> Path:
    env = os.environ.get("RELAYBAIT_BINARY")
    return Path(env) if env else source_dir() / "build" / "release" / "relaybait"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise AssertionError(f"required tool '{name}' is not installed: run scripts/install-deps.sh")
    return path


# ---------------------------------------------------------------------------------------------
# ports

def _listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A":  # LISTEN
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port_offset(rng: random.Random | None = None) -> int:
    """An offset whose three ports (25, 465, 587 + offset) are all free right now."""
    rng = rng or random.Random(os.getpid() ^ time.monotonic_ns())
    # Stay below the kernel's ephemeral range: a port in it can be taken at any moment by an
    # outgoing connection of another test, e.g. between a kill -9 and the restart.
    lowest_ephemeral = 32768
    try:
        lowest_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    top = max(2000, lowest_ephemeral - max(BASE_PORTS.values()) - 1)
    for _ in range(200):
        offset = rng.randrange(1100, top)
        ports = [p + offset for p in BASE_PORTS.values()]
        if all(_port_free(p) for p in ports):
            return offset
    raise RuntimeError("no free port offset found")


# ---------------------------------------------------------------------------------------------
# the server

class Relaybait:
    """One relaybait process (`relaybait serve`) on loopback with its own data directory."""

    def __init__(self, workdir: Path, config_text: str, hostname: str = HOSTNAME):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.config_file = self.workdir / "relaybait.toml"
        self.config_file.write_text(config_text)
        self.hostname = hostname
        self.binary = binary_path()
        self.proc: subprocess.Popen | None = None
        self.offset: int | None = None
        self.ports: dict[str, int] = {}
        self.starts = 0
        self.extra_args: list[str] = []  # appended to the `serve` command line (e.g. --test-mode)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, offset: int | None = None, timeout: float = 30.0) -> "Relaybait":
        if not self.binary.exists():
            raise AssertionError(f"relaybait binary not found at {self.binary}: build it first "
                                 "(cmake --workflow --preset release) or set RELAYBAIT_BINARY")
        attempts = 1 if offset is not None else 5
        last_error = ""
        for _ in range(attempts):
            off = offset if offset is not None else pick_port_offset()
            if self._spawn(off, timeout):
                return self
            last_error = self.log_tail()
        raise AssertionError(f"relaybait did not start listening; log:\n{last_error}")

    def _spawn(self, offset: int, timeout: float) -> bool:
        self.offset = offset
        self.ports = {name: base + offset for name, base in BASE_PORTS.items()}
        self.starts += 1
        self.log_file = self.workdir / f"server-{self.starts}.log"
        cmd = [str(self.binary), "serve", "--config", str(self.config_file),
               "--data-dir", str(self.data_dir), "--bind", "127.0.0.1",
               "--port-offset", str(offset), "--hostname", self.hostname, *self.extra_args]
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self.log_handle = open(self.log_file, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log_handle,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log_handle.close()
                return False
            # Readiness without connecting (a probe connection would be recorded as a session):
            # all three ports in LISTEN state, owned by our process (checked via its fds).
            if set(self.ports.values()) <= self._own_listening_ports():
                return True
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        self.log_handle.close()
        return False

    def _own_listening_ports(self) -> set[int]:
        try:
            inodes = set()
            fd_dir = Path(f"/proc/{self.proc.pid}/fd")
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except FileNotFoundError:
            return set()
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        parts = line.split()
                        if parts[3] == "0A" and parts[9] in inodes:
                            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
            except FileNotFoundError:
                pass
        return ports

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM; asserts a clean exit (code 0, no sanitizer report, no crash)."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.log_handle.close()
                raise AssertionError(f"relaybait did not exit within {timeout}s of SIGTERM; log:\n"
                                     + self.log_tail())
        self.log_handle.close()
        rc = proc.returncode
        log = self.log_tail(20000)
        assert rc == 0, f"relaybait exited with {rc} after SIGTERM (negative = signal); log:\n{log}"
        for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer", "terminate called",
                       "Segmentation fault"):
            assert marker not in log, f"relaybait reported '{marker}'; log:\n{log}"
        return rc

    def kill9(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.log_handle.close()
            self.proc = None

    def restart(self, same_ports: bool = True):
        self.stop()
        self.start(self.offset if same_ports else None)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def log_tail(self, limit: int = 4000) -> str:
        try:
            data = Path(self.log_file).read_bytes()
        except (OSError, AttributeError):
            return "(no log)"
        return data[-limit:].decode("utf-8", "replace")

    # -- what it stored -----------------------------------------------------------------------
    def cli(self, *args: str, json_output: bool = False, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.binary), *args, "--data-dir", str(self.data_dir)]
        if json_output:
            cmd.append("--json")
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, (f"{' '.join(cmd)} exited {proc.returncode}\n"
                                          f"stdout: {proc.stdout[-2000:]!r}\nstderr: {proc.stderr[-2000:]!r}")
        return proc

    def cli_json(self, *args: str):
        out = self.cli(*args, json_output=True).stdout
        try:
            return json.loads(out)
        except ValueError as e:
            raise AssertionError(f"relaybait {' '.join(args)} --json printed invalid JSON: {e}\n{out[:2000]!r}")

    def db(self) -> sqlite3.Connection:
        path = self.data_dir / "relaybait.db"
        assert path.exists(), f"no database at {path}"
        conn = sqlite3.connect(str(path), timeout=15)
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql: str, params=()) -> list[dict]:
        conn = self.db()
        try:
            return [dict(r) for r in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def events(self) -> list[dict]:
        path = self.data_dir / "events.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line being written right now
        return out

    def maildir_new(self, folder: str = "") -> list[Path]:
        d = self.data_dir / "maildir" / folder / "new"
        return sorted(d.iterdir()) if d.exists() else []

    def all_maildir_files(self) -> list[Path]:
        root = self.data_dir / "maildir"
        if not root.exists():
            return []
        return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name == "new")

    # -- schema knowledge, in one place --------------------------------------------------------
    def message_by_queue_id(self, queue_id: str) -> dict | None:
        rows = self.query("SELECT * FROM messages WHERE queue_id = ?", (queue_id,))
        return rows[0] if rows else None

    def recipients_of(self, message: dict) -> list[str]:
        rows = self.query("SELECT * FROM recipients WHERE message_id = ? ORDER BY position", (message["id"],))
        out = []
        for r in rows:
            for key in ("address", "recipient", "rcpt", "email", "rcpt_to"):
                if key in r:
                    out.append(r[key])
                    break
            else:
                raise AssertionError(f"recipients row has no address column: {r}")
        return out

    def message_file(self, message: dict) -> Path:
        return self.data_dir / message["maildir_path"]

    def session_row(self, session_id: str) -> dict | None:
        rows = self.query("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return rows[0] if rows else None

    def credentials(self) -> list[dict]:
        return self.query("SELECT * FROM credentials ORDER BY id")


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def as_list(obj, *keys) -> list:
    """CLI JSON list output: accept a bare array or an object wrapping one."""
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        for k in keys + ("items", "results", "data"):
            if isinstance(obj.get(k), list):
                return obj[k]
    raise AssertionError(f"expected a JSON list, got {str(obj)[:500]}")


# ---------------------------------------------------------------------------------------------
# messages

def unverified_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def split_trace(stored: bytes, original: bytes) -> list[tuple[str, str]]:
    """Asserts `stored` is trace headers followed by exactly `original`; returns the trace
    headers as (name, unfolded value) pairs."""
    assert stored.endswith(original), (
        "stored message does not end with the bytes sent\n"
        f"sent (tail): {original[-300:]!r}\nstored (tail): {stored[-300:]!r}")
    prefix = stored[: len(stored) - len(original)]
    assert prefix.endswith(b"\r\n") or prefix.endswith(b"\n") or prefix == b"", \
        f"trace headers do not end a line: {prefix[-200:]!r}"
    headers: list[tuple[str, str]] = []
    for raw in re.split(rb"\r?\n", prefix):
        if not raw:
            continue
        if raw[:1] in (b" ", b"\t"):
            assert headers, f"continuation line without a header: {raw!r}"
            name, value = headers[-1]
            headers[-1] = (name, value + " " + raw.strip().decode("utf-8", "replace"))
            continue
        name, sep, value = raw.partition(b":")
        assert sep, f"not a header line in the trace block: {raw!r}"
        headers.append((name.decode("ascii", "replace"), value.strip().decode("utf-8", "replace")))
    for name, _ in headers:
        assert name.lower().startswith(TRACE_HEADER_NAMES), f"unexpected trace header {name!r}"
    return headers


def header(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name.lower()]


def make_message(subject: str, body: bytes = b"Hello from the integration tests.\r\n",
                 sender: str = "alice@example.org", to: str = "victim@example.com",
                 extra_headers: bytes = b"") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            f"Message-ID: <{abs(hash((subject, time.time_ns())))}@example.org>\r\n").encode() \
        + extra_headers + b"\r\n" + body


QUEUED_RE = re.compile(rb"queued as ([0-9A-Za-z]+)")


def queue_id_from(reply: bytes | str) -> str:
    if isinstance(reply, str):
        reply = reply.encode("latin-1")
    m = QUEUED_RE.search(reply)
    assert m, f"no 'queued as' in reply {reply!r}"
    return m.group(1).decode()


def smtp_dialogue(port: int, lines: list[bytes], tls: bool = False, timeout: float = 10.0) -> list[bytes]:
    """Raw socket: banner, then each line sent and one reply read (up to a final line)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        sock = unverified_context().wrap_socket(sock)
    f = sock.makefile("rb")
    replies = [read_reply(f)]
    for line in lines:
        sock.sendall(line)
        replies.append(read_reply(f))
    sock.close()
    return replies


def read_reply(f) -> bytes:
    out = b""
    while True:
        line = f.readline(100000)
        if not line:
            return out
        out += line
        if len(line) >= 4 and line[3:4] != b"-":
            return out
