"""A 2 GB DATA, generated on the fly: relaybait must answer 552 (message size exceeds the
limit) after the end of data, or drop the connection, store nothing, and keep its memory
bounded. Slow (~2 GB over loopback): this file is meant to carry the CTest label "slow" so the
sanitizer workflow skips it (RELAYBAIT_BIG_DATA_MB overrides the size)."""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid

from relaybait_testlib import read_reply
from test_hostile import deliver_one, rss_bound_kb

SIZE_MB = int(os.environ.get("RELAYBAIT_BIG_DATA_MB", "2048"))


def test_2gb_data_rejected_memory_bounded(server):
    before = server.query("SELECT COUNT(*) AS n FROM messages")[0]["n"]
    baseline = server.rss_kb()
    sock = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=60)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    f = sock.makefile("rb")
    assert read_reply(f).startswith(b"220")
    for cmd, code in ((b"EHLO big.example.org\r\n", b"250"), (b"MAIL FROM:<big@example.org>\r\n", b"250"),
                      (b"RCPT TO:<victim@example.com>\r\n", b"250"), (b"DATA\r\n", b"354")):
        sock.sendall(cmd)
        assert read_reply(f).startswith(code)

    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], server.rss_kb())
            except (OSError, AssertionError):
                return
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    token = uuid.uuid4().hex
    line = (b"X" * 998 + b"\r\n")
    chunk = f"Subject: big {token}\r\n\r\n".encode() + line * ((1 << 20) // len(line))
    sent = 0
    dropped = False
    start = time.monotonic()
    try:
        while sent < SIZE_MB << 20:
            sock.sendall(chunk)
            sent += len(chunk)
            chunk = line * ((1 << 20) // len(line))
        sock.sendall(b".\r\n")
        reply = read_reply(f)
    except (BrokenPipeError, ConnectionResetError, socket.timeout) as e:
        dropped = True
        reply = f"<<{type(e).__name__}>>".encode()
    elapsed = time.monotonic() - start
    done.set()
    sampler.join()
    sock.close()
    print(f"sent {sent >> 20} MB in {elapsed:.1f}s ({(sent >> 20) / max(elapsed, 0.001):.0f} MB/s); "
          f"reply {reply[:120]!r}; RSS {baseline} -> peak {peak[0]} kB")
    assert dropped or reply.startswith(b"552 "), reply
    assert server.alive(), server.log_tail()
    assert peak[0] <= rss_bound_kb(server, baseline, 64), (baseline, peak[0])
    time.sleep(0.5)
    after = server.query("SELECT COUNT(*) AS n FROM messages")[0]["n"]
    assert after == before, "a message over the size limit was stored"
    big_files = [p for p in server.data_dir.rglob("*") if p.is_file() and p.stat().st_size > 64 << 20]
    assert not big_files, f"files over 64 MB left in the data dir: {big_files}"
    deliver_one(server)
