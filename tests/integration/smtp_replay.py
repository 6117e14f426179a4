"""Replays the captured Postfix 3.7 dialogues (tests/transcripts/postfix-3.7/*.json) against a
live server and compares what comes back, byte for byte.

Transcript format: {name: [[sent, reply], ...]}, latin-1 strings. Markers (see the
transcripts' README.md):
  sent ""                       read the banner
  sent "<<tls-handshake>>"      upgrade the socket to TLS; reply "ok PROTO CIPHER"
  sent "<<read-after-tls>>"     what arrives right after the upgrade ("<<nothing>>")
  sent "<<wait N>>"             listen N seconds ("<<nothing>>")
  sent "<<late-data>>"          reply bytes that arrive later, without sending anything
  sent "<<eof-check>>"          end: "<<closed-by-server>>" or "<<open>>"
  reply "<<timeout>>"           nothing within the short timeout
  reply "<<eof>>"               the server closed without sending anything
  reply "<<error: ConnectionResetError>>"   the server answered with a TCP RST
  reply "<<send-failed: X>>"    the server had closed already; sending failed

Replies are read from one buffer per connection: for an SMTP reply the harness waits for as
many final reply lines ("NNN " lines) as the captured reply has and takes exactly those bytes,
so the result does not depend on how TCP happened to segment the data; bytes the server sends
beyond that stay in the buffer and show up (as a mismatch) at the next step.

Allowed differences (normalised on both sides): the queue id in "queued as X", the CRAM-MD5
challenge (a "334 <base64 of <...@...>>" line). Set REPLAY_TLS_CIPHER=0 to compare only the
TLS protocol version, not the cipher.
"""
from __future__ import annotations

import base64
import binascii
import concurrent.futures
import dataclasses
import difflib
import json
import os
import re
import socket
import ssl
import time
from pathlib import Path

LISTENERS = ("smtp", "smtps", "submission")
TRANSCRIPT_FILES = {"smtp": "smtp-2525.json", "smtps": "smtps-2465.json", "submission": "submission-2587.json"}

REPLY_TIMEOUT = float(os.environ.get("REPLAY_REPLY_TIMEOUT", "15"))  # a reply that must come
SHORT_TIMEOUT = float(os.environ.get("REPLAY_SHORT_TIMEOUT", "1.0"))  # "<<timeout>>", "<<nothing>>"
EOF_CHECK_TIMEOUT = float(os.environ.get("REPLAY_EOF_TIMEOUT", "1.0"))
CONNECT_TIMEOUT = 10.0
COMPARE_CIPHER = os.environ.get("REPLAY_TLS_CIPHER", "1") != "0"

FINAL_LINE = re.compile(rb"^\d{3}(?: |$)")
CLOSED_MARKERS = ("<<eof>>", "<<error: ConnectionResetError>>")


def load_transcripts(directory: Path) -> dict[str, dict[str, list[list[str]]]]:
    out = {}
    for listener, name in TRANSCRIPT_FILES.items():
        with open(directory / name, encoding="utf-8") as f:
            out[listener] = json.load(f)
    return out


def count_final_lines(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n")[:-1] if FINAL_LINE.match(line.rstrip(b"\r")))


def split_after_final_lines(data: bytes, n: int) -> int | None:
    """Index just past the n-th complete final reply line, or None."""
    pos = 0
    seen = 0
    while seen < n:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return None
        if FINAL_LINE.match(data[pos:nl].rstrip(b"\r")):
            seen += 1
        pos = nl + 1
    return pos


class Conn:
    """One client connection with a receive buffer; TLS can be started on it."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.state = "open"  # open | eof | reset | error:<name>
        self.tls_active = False
        self.garbled = False  # a failed TLS handshake left undecodable bytes on the wire

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def fill(self, timeout: float) -> str:
        """One receive into the buffer. Returns data | timeout | eof | reset | error:<name>."""
        if self.state != "open":
            return self.state
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return "timeout"
        except ssl.SSLWantReadError:
            return "timeout"
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            self.state = "eof"
            return self.state
        except ConnectionResetError:
            self.state = "reset"
            return self.state
        except OSError as e:
            self.state = f"error:{type(e).__name__}"
            return self.state
        if not chunk:
            self.state = "eof"
            return self.state
        self.buf += chunk
        return "data"

    def take(self, n: int | None = None) -> bytes:
        n = len(self.buf) if n is None else n
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_for(self, seconds: float) -> str:
        """Listens for `seconds`; returns what arrived as a transcript string."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r = self.fill(left)
            if r != "data" and r != "timeout":
                break
            if r == "timeout":
                break
        if self.buf:
            return self.take().decode("latin-1")
        return "<<nothing>>" if self.state == "open" else state_marker(self.state)

    def read_reply(self, expected: str) -> str:
        """Reads what corresponds to the captured reply `expected` (an SMTP reply text)."""
        exp = expected.encode("latin-1")
        n = count_final_lines(exp)
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            if n > 0:
                end = split_after_final_lines(bytes(self.buf), n)
                if end is not None:
                    return self.take(end).decode("latin-1")
            elif len(self.buf) >= len(exp):
                return self.take(len(exp)).decode("latin-1")
            left = deadline - time.monotonic()
            if left <= 0:
                r = "timeout"
            else:
                r = self.fill(left)
            if r == "data":
                continue
            got = self.take().decode("latin-1")
            if r == "timeout":
                return got + "<<timeout>>"
            return got + state_marker(r)

    def read_closing(self) -> str:
        """For a captured "<<eof>>" / reset: whatever arrives until the server closes."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        while not self.buf:
            left = deadline - time.monotonic()
            r = self.fill(max(left, 0.001))
            if r == "data":
                break
            if r == "timeout":
                return "<<timeout>>"
            return state_marker(r)
        # data arrived instead: report it (plus how the connection ended, if it did quickly)
        got = self.take().decode("latin-1")
        return got

    def starttls(self) -> str:
        if self.tls_active:
            # A second handshake while TLS is already up (the capture client did this on the
            # implicit-TLS port): a fresh TLS client on the same TCP connection. Replies the
            # old TLS layer already decoded are abandoned, as the capture client's were.
            self.buf.clear()
            self.sock = socket.socket(fileno=os.dup(self.sock.fileno()))
        elif self.buf:
            return "<<plaintext before TLS: %r>>" % self.take().decode("latin-1")
        if self.state != "open":
            return state_marker(self.state)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = self.sock
        spare = os.dup(raw.fileno())  # wrap_socket closes the socket when the handshake fails
        try:
            raw.settimeout(REPLY_TIMEOUT)
            self.sock = ctx.wrap_socket(raw, server_hostname=None)
        except (ssl.SSLError, OSError) as e:
            self.garbled = True
            self.sock = socket.socket(fileno=spare)
            return f"error: {e}"
        os.close(spare)
        self.tls_active = True
        return f"ok {self.sock.version()} {self.sock.cipher()[0]}"

    def send(self, data: bytes) -> str | None:
        """None when sent; else the "<<send-failed: X>>" marker."""
        try:
            self.sock.settimeout(REPLY_TIMEOUT)
            self.sock.sendall(data)
            return None
        except (OSError, ssl.SSLError) as e:
            return f"<<send-failed: {type(e).__name__}>>"


def state_marker(state: str) -> str:
    if state == "eof":
        return "<<eof>>"
    if state == "reset":
        return "<<error: ConnectionResetError>>"
    if state.startswith("error:"):
        return f"<<error: {state[6:]}>>"
    return f"<<{state}>>"


def run_dialogue(host: str, port: int, steps: list[list[str]]) -> list[str]:
    """Plays one dialogue; returns the actual reply for every step."""
    actual: list[str] = []
    try:
        conn = Conn(host, port)
    except OSError as e:
        return [f"<<connect failed: {e}>>"] * len(steps)
    try:
        for sent, expected in steps:
            if sent == "":
                actual.append(conn.read_reply(expected))
            elif sent == "<<tls-handshake>>":
                actual.append(conn.starttls())
            elif sent == "<<read-after-tls>>":
                actual.append(conn.read_for(SHORT_TIMEOUT))
            elif sent.startswith("<<wait "):
                actual.append(conn.read_for(float(sent[7:-2])))
            elif sent == "<<late-data>>":
                actual.append(conn.read_reply(expected))
            elif sent == "<<eof-check>>":
                if conn.buf and not conn.garbled:
                    actual.append("<<unexpected data: %r>>" % conn.take().decode("latin-1"))
                    continue
                r = conn.fill(EOF_CHECK_TIMEOUT)
                while r == "data" and conn.garbled:  # TLS records nobody can decode: skip
                    conn.take()
                    r = conn.fill(EOF_CHECK_TIMEOUT)
                if r == "timeout":
                    actual.append("<<open>>")
                elif r == "data":
                    actual.append("<<unexpected data: %r>>" % conn.take().decode("latin-1"))
                else:
                    actual.append("<<closed-by-server>>")
            else:
                if (expected == "<<eof>>" or expected.startswith("<<send-failed:")) \
                        and conn.state == "open" and not conn.buf:
                    # The capture shows the server closed before this command. Wait (briefly)
                    # for its FIN first: otherwise whether the read after the send reports EOF
                    # or RST is a race between the server's close() and our send.
                    conn.fill(SHORT_TIMEOUT)
                failed = conn.send(sent.encode("latin-1"))
                if failed:
                    # nothing more can be read after a failed send
                    conn.state = "eof" if conn.state == "open" else conn.state
                    actual.append(conn.take().decode("latin-1") + failed if conn.buf else failed)
                elif expected == "<<timeout>>":
                    if conn.buf:
                        actual.append(conn.take().decode("latin-1"))
                    else:
                        r = conn.fill(SHORT_TIMEOUT)
                        actual.append("<<timeout>>" if r == "timeout" else
                                      (conn.take().decode("latin-1") if r == "data" else state_marker(r)))
                elif expected in CLOSED_MARKERS or expected.startswith("<<send-failed:"):
                    actual.append(conn.read_closing())
                else:
                    actual.append(conn.read_reply(expected))
    except Exception as e:  # a harness problem must show up as a mismatch, not a crash
        actual.append(f"<<harness error: {type(e).__name__}: {e}>>")
    finally:
        conn.close()
    return actual


_CRAM_LINE = re.compile(r"^334 ([A-Za-z0-9+/=]+)\r\n", re.M)


def _cram(m: re.Match) -> str:
    try:
        decoded = base64.b64decode(m.group(1), validate=True)
    except (binascii.Error, ValueError):
        return m.group(0)
    if re.fullmatch(rb"<[^<>@\s]+@[^<>\s]+>", decoded):
        return "334 <CRAM-MD5 challenge>\r\n"
    return m.group(0)


def normalise(reply: str) -> str:
    reply = re.sub(r"queued as [0-9A-Za-z]+", "queued as <QUEUEID>", reply)
    reply = re.sub(r" \(_ssl\.c:\d+\)", "", reply)  # CPython build detail in ssl errors
    reply = _CRAM_LINE.sub(_cram, reply)
    if not COMPARE_CIPHER:
        reply = re.sub(r"^(ok TLSv[0-9.]+) .*$", r"\1", reply)
    if reply.startswith("<<send-failed:"):
        return "<<closed by server before the send>>"
    return reply


def step_matches(expected: str, actual: str) -> bool:
    if expected.startswith("<<send-failed:"):
        # Whether the send itself fails or the following read sees EOF/RST depends only on when
        # the kernel processed the server's FIN/RST: both mean "closed before this command".
        return actual.startswith("<<send-failed:") or actual in CLOSED_MARKERS
    return normalise(expected) == normalise(actual)


@dataclasses.dataclass
class Result:
    listener: str
    name: str
    steps: list[list[str]]
    actual: list[str]

    @property
    def mismatches(self) -> list[int]:
        return [i for i, ((_, exp), act) in enumerate(zip(self.steps, self.actual)) if not step_matches(exp, act)]

    @property
    def ok(self) -> bool:
        return len(self.actual) == len(self.steps) and not self.mismatches

    def report(self, max_steps: int = 3) -> str:
        lines = [f"--- {self.listener}/{self.name}: {len(self.mismatches)} step(s) differ"]
        for i in self.mismatches[:max_steps]:
            sent, exp = self.steps[i]
            act = self.actual[i]
            lines.append(f"  step {i}: sent {sent!r}")
            exp_lines = [repr(x) for x in normalise(exp).splitlines(keepends=True)] or ["''"]
            act_lines = [repr(x) for x in normalise(act).splitlines(keepends=True)] or ["''"]
            for d in difflib.unified_diff(exp_lines, act_lines, "postfix", "actual", lineterm="", n=1):
                if d.startswith(("---", "+++")):
                    continue
                lines.append("      " + d)
        if len(self.mismatches) > max_steps:
            lines.append(f"  ... and {len(self.mismatches) - max_steps} more step(s)")
        return "\n".join(lines)


def replay_all(host: str, ports: dict[str, int], transcripts: dict, jobs: int = 16,
               only: set[str] | None = None) -> list[Result]:
    work = []
    for listener in LISTENERS:
        for name, steps in transcripts[listener].items():
            if only and name not in only and f"{listener}/{name}" not in only:
                continue
            work.append((listener, name, steps))
    # longest dialogues first so the slow ones (error sleeps) overlap
    work.sort(key=lambda w: -len(w[2]))
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(run_dialogue, host, ports[l], s): (l, n, s) for l, n, s in work}
        for fut in concurrent.futures.as_completed(futs):
            l, n, s = futs[fut]
            results.append(Result(l, n, s, fut.result()))
    order = {l: i for i, l in enumerate(LISTENERS)}
    results.sort(key=lambda r: (order[r.listener], list(transcripts[r.listener]).index(r.name)))
    return results


def queue_ids(results: list[Result]) -> list[str]:
    ids = []
    for r in results:
        for a in r.actual:
            ids += re.findall(r"queued as ([0-9A-Za-z]+)", a)
    return ids
