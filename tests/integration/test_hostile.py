"""Safety invariant 4: nothing from the network is trusted. Endless lines, binary garbage on
every port and 1000 silent connections; the server stays alive, keeps delivering, and its
memory (VmRSS from /proc) stays bounded. (The 2 GB DATA test is test_slow_big_data.py.)"""
from __future__ import annotations

import os
import random
import resource
import smtplib
import socket
import ssl
import time
import uuid

from relaybait_testlib import make_message, queue_id_from, unverified_context, wait_for

# 1000 held connections need file descriptors, here and in the server (which inherits this).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft < 4096:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, _hard), _hard))


def sanitized(server) -> bool:
    try:
        with open(f"/proc/{server.pid}/maps") as f:
            maps = f.read()
    except OSError:
        maps = ""
    return "libasan" in maps or "asan" in str(server.binary).lower()


def rss_bound_kb(server, baseline_kb: int, allowed_mb: int) -> int:
    """Allowed RSS: baseline + allowed_mb (x4 + ASan's quarantine under sanitizers)."""
    if sanitized(server):
        return baseline_kb + allowed_mb * 4 * 1024 + 512 * 1024
    return baseline_kb + allowed_mb * 1024


def deliver_one(server, port_name: str = "smtp", source: str | None = None, timeout: float = 60) -> str:
    msg = make_message("still works " + uuid.uuid4().hex)
    kwargs = {"source_address": (source, 0)} if source else {}
    with smtplib.SMTP("127.0.0.1", server.ports[port_name], timeout=timeout, **kwargs) as s:
        s.mail("a@example.org")
        s.rcpt("victim@example.com")
        code, resp = s.data(msg)
        assert code == 250, resp
    qid = queue_id_from(resp)
    row = wait_for(lambda: server.message_by_queue_id(qid), 10, what=f"message {qid}")
    assert server.message_file(row).read_bytes().endswith(msg)
    return qid


def test_endless_line(server):
    baseline = server.rss_kb()
    sock = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=20)
    banner = sock.recv(1000)
    assert banner.startswith(b"220 ")
    chunk = b"A" * (1 << 20)
    sent = 0
    peak = baseline
    reply = b""
    try:
        for _ in range(32):  # 32 MB without a line feed
            sock.sendall(chunk)
            sent += len(chunk)
            peak = max(peak, server.rss_kb())
    except (BrokenPipeError, ConnectionResetError):
        pass  # dropped: fine
    sock.settimeout(5)
    try:
        sock.sendall(b"\r\nQUIT\r\n")
        while True:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    except (OSError, socket.timeout):
        pass
    sock.close()
    print(f"sent {sent >> 20} MB without LF; reply {reply[:200]!r}; RSS {baseline} -> peak {peak} kB")
    assert server.alive(), server.log_tail()
    assert peak <= rss_bound_kb(server, baseline, 48), (baseline, peak)
    if reply:
        assert reply[:3] in (b"500", b"421", b"221", b"552", b"250"), reply[:200]
    deliver_one(server)


def test_binary_garbage_on_all_ports(server):
    rng = random.Random(1234)
    baseline = server.rss_kb()
    for port_name, port in server.ports.items():
        for i in range(6):
            garbage = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 65536)))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    if i % 2 and port_name != "smtps":
                        sock.recv(1000)  # after the banner, or before it (every other time)
                    sock.sendall(garbage)
                    sock.settimeout(0.5)
                    try:
                        while sock.recv(65536):
                            pass
                    except (socket.timeout, OSError):
                        pass
            except (ConnectionResetError, BrokenPipeError):
                pass
        # garbage inside TLS too
        if port_name != "submission":
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                if port_name == "smtp":
                    raw.recv(1000)
                    raw.sendall(b"EHLO x\r\n")
                    time.sleep(0.2)
                    raw.recv(4000)
                    raw.sendall(b"STARTTLS\r\n")
                    assert raw.recv(1000).startswith(b"220")
                tls = unverified_context().wrap_socket(raw)
                try:
                    tls.sendall(os.urandom(100_000))
                    tls.settimeout(0.5)
                    while tls.recv(65536):
                        pass
                except (OSError, ssl.SSLError):
                    pass
        assert server.alive(), f"died after garbage on {port_name}:\n{server.log_tail()}"
    for port_name in ("smtp",):
        deliver_one(server, port_name)
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["smtps"], timeout=30, context=unverified_context()) as s:
        assert s.noop()[0] == 250
    assert server.rss_kb() <= rss_bound_kb(server, baseline, 48)
    events = server.events()
    assert any(e.get("eventid") == "session.close" for e in events)


def test_1000_silent_connections(server):
    baseline = server.rss_kb()
    held = []
    try:
        # Spread over source addresses 127.0.0.2-127.0.0.251 (4 each), so a per-client-IP
        # connection limit is not what this measures; the real client comes from 127.0.0.1.
        for i in range(1000):
            src = f"127.0.0.{2 + i % 250}"
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((src, 0))
            s.settimeout(10)
            s.connect(("127.0.0.1", server.ports[("smtp", "submission", "smtps")[i % 3]]))
            held.append(s)
        time.sleep(1.0)
        start = time.monotonic()
        deliver_one(server, "smtp", source="127.0.0.1", timeout=60)
        elapsed = time.monotonic() - start
        peak = server.rss_kb()
        print(f"1000 idle connections held; delivery took {elapsed:.2f}s; RSS {baseline} -> {peak} kB")
        assert elapsed < 20
        assert peak <= rss_bound_kb(server, baseline, 200), (baseline, peak)
        # the silent ones are still connected (not all dropped at once) or got a polite reply
        alive = 0
        for s in held[:50]:
            s.setblocking(False)
            try:
                data = s.recv(1000)
                alive += bool(data)
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        assert alive > 0
    finally:
        for s in held:
            s.close()
    assert server.alive(), server.log_tail()
    time.sleep(1)
    deliver_one(server)
    assert server.rss_kb() <= rss_bound_kb(server, baseline, 200)
