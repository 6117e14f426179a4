"""Every configurable limit answers like a real server, disconnects the offender and leaves
the other clients unaffected."""
from __future__ import annotations

import smtplib
import socket
import time

from conftest import relaybait_config


def connect(server, listener: str = "smtp", timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.ports[listener]), timeout=timeout)
    return s


def read_reply(s: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) >= 2 and len(lines[-2]) >= 4 and lines[-2][3:4] == b" ":
            return data


def command(s: socket.socket, line: bytes) -> bytes:
    s.sendall(line + b"\r\n")
    return read_reply(s)


def closed_by_server(s: socket.socket, wait: float = 5.0) -> bool:
    s.settimeout(wait)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def deliver_one(server) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname="ok.example.org", timeout=15) as c:
        c.sendmail("alice@example.org", ["bob@example.com"], b"Subject: unaffected\r\n\r\nstill works\r\n")


def test_sessions_per_ip_and_total(make_server):
    server = make_server(relaybait_config(extra="[limits]\nsessions_per_ip = 3\nsessions_total = 5\n"))
    held = [connect(server) for _ in range(3)]
    for s in held:
        assert read_reply(s).startswith(b"220 ")
    fourth = connect(server)
    assert read_reply(fourth) == b"421 4.7.0 mx1.example.net Error: too many connections from 127.0.0.1\r\n"
    assert closed_by_server(fourth)
    # Another address still gets in, up to the overall limit.
    others = []
    for source in ("127.0.0.2", "127.0.0.3"):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", server.ports["smtp"]))
        assert read_reply(s).startswith(b"220 "), source
        others.append(s)
    s = socket.socket()
    s.bind(("127.0.0.4", 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", server.ports["smtp"]))
    assert read_reply(s).startswith(b"421 4.7.0 "), "sessions_total reached"
    for c in held + others + [s, fourth]:
        c.close()
    time.sleep(0.5)
    deliver_one(server)  # slots are given back when sessions end
    rows = server.query("SELECT outcome, COUNT(*) AS n FROM sessions GROUP BY outcome")
    assert {r["outcome"]: r["n"] for r in rows}.get("busy") == 2, rows


def test_idle_timeout_answers_421_and_closes(make_server):
    server = make_server(relaybait_config(extra="[limits]\nidle_timeout_seconds = 1\n"))
    s = connect(server)
    assert read_reply(s).startswith(b"220 ")
    assert command(s, b"EHLO slow.example.org").startswith(b"250-")
    started = time.monotonic()
    s.settimeout(10)
    reply = read_reply(s)
    waited = time.monotonic() - started
    assert reply == b"421 4.4.2 mx1.example.net Error: timeout exceeded\r\n"
    assert 0.8 <= waited <= 4.0, waited
    assert closed_by_server(s)
    deliver_one(server)
    session = server.query("SELECT outcome FROM sessions WHERE helo_name = 'slow.example.org'")
    assert session and session[0]["outcome"] == "timeout", session


def test_session_timeout_ends_a_busy_session(make_server):
    server = make_server(relaybait_config(extra="[limits]\nsession_timeout_seconds = 2\n"))
    s = connect(server)
    assert read_reply(s).startswith(b"220 ")
    started = time.monotonic()
    # The client keeps talking, so the idle timeout never fires; the session limit does.
    reply = b""
    while time.monotonic() - started < 8:
        reply = command(s, b"NOOP")
        if not reply.startswith(b"250"):
            break
        time.sleep(0.2)
    assert reply == b"421 4.4.2 mx1.example.net Error: timeout exceeded\r\n", reply
    assert 1.5 <= time.monotonic() - started <= 5
    assert closed_by_server(s)


def test_a_burst_of_slowed_replies_cannot_outlive_the_deadline(make_server):
    # Past the soft error limit every reply waits error_sleep. One read of 40 pipelined
    # commands keeps the session serving for 20 s; with more commands, for hours. The replies
    # keep the idle deadline alive (as Postfix's per-write timeout would), but the session
    # deadline ends it on time, in the middle of the burst.
    server = make_server(relaybait_config(extra=(
        "[limits]\nsoft_error_limit = 1\nerror_sleep_ms = 500\nidle_timeout_seconds = 2\n"
        "session_timeout_seconds = 3\n")))
    s = connect(server)
    started = time.monotonic()
    assert read_reply(s).startswith(b"220 ")
    assert command(s, b"EHLO burst.example.org").startswith(b"250-")
    s.sendall(b"BOGUS\r\n" + b"NOOP\r\n" * 40)
    received = b""
    s.settimeout(30)
    while b"421 " not in received:
        chunk = s.recv(65536)
        if not chunk:
            break
        received += chunk
    waited = time.monotonic() - started
    assert received.endswith(b"421 4.4.2 mx1.example.net Error: timeout exceeded\r\n"), received[-200:]
    assert received.count(b"250 2.0.0 Ok") < 10, received
    assert 2.5 <= waited <= 6.0, waited
    assert closed_by_server(s)
    deliver_one(server)
    session = server.query("SELECT outcome FROM sessions WHERE helo_name = 'burst.example.org'")
    assert session and session[0]["outcome"] == "timeout", session


def test_message_size_limit(make_server):
    server = make_server(relaybait_config(extra="[limits]\nmessage_size_bytes = 10000\n"))
    s = connect(server)
    read_reply(s)
    command(s, b"EHLO big.example.org")
    assert command(s, b"MAIL FROM:<a@example.org> SIZE=20000") == b"552 5.3.4 Message size exceeds fixed limit\r\n"
    assert command(s, b"MAIL FROM:<a@example.org>").startswith(b"250")
    assert command(s, b"RCPT TO:<b@example.com>").startswith(b"250")
    assert command(s, b"DATA").startswith(b"354")
    s.sendall(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 30 + b".\r\n")
    assert read_reply(s) == b"552 5.3.4 Message size exceeds fixed limit\r\n"
    assert command(s, b"NOOP").startswith(b"250"), "the session goes on after a refused message"
    s.close()
    assert server.query("SELECT COUNT(*) AS n FROM messages")[0]["n"] == 0
    assert not list((server.data_dir / "maildir" / "new").iterdir())


def test_recipients_per_message(make_server):
    server = make_server(relaybait_config(extra="[limits]\nrecipients_per_message = 3\n"))
    s = connect(server)
    read_reply(s)
    command(s, b"EHLO many.example.org")
    command(s, b"MAIL FROM:<a@example.org>")
    replies = [command(s, b"RCPT TO:<r%d@example.com>" % i) for i in range(5)]
    assert all(r.startswith(b"250") for r in replies[:3]), replies
    assert all(r == b"452 4.5.3 Error: too many recipients\r\n" for r in replies[3:]), replies
    assert command(s, b"DATA").startswith(b"354")
    s.sendall(b"Subject: three\r\n\r\nbody\r\n.\r\n")
    assert read_reply(s).startswith(b"250 2.0.0 Ok: queued as ")
    s.close()
    time.sleep(0.3)
    rows = server.query("SELECT address FROM recipients ORDER BY position")
    assert [r["address"] for r in rows] == ["r0@example.com", "r1@example.com", "r2@example.com"]


def test_commands_and_messages_per_session(make_server):
    server = make_server(relaybait_config(extra="[limits]\ncommands_per_session = 10\nmessages_per_session = 1\n"))
    s = connect(server)
    read_reply(s)
    replies = [command(s, b"NOOP") for _ in range(12)]
    assert replies[0].startswith(b"250")
    assert replies[-1] == b"" or replies[-1].startswith(b"421 4."), replies
    assert any(r.startswith(b"421 4.") for r in replies), replies
    assert closed_by_server(s)

    s = connect(server)
    read_reply(s)
    command(s, b"EHLO twice.example.org")
    for n in range(2):
        mail = command(s, b"MAIL FROM:<a@example.org>")
        if n == 1:
            assert mail.startswith(b"421 4."), mail
            break
        command(s, b"RCPT TO:<b@example.com>")
        command(s, b"DATA")
        s.sendall(b"Subject: one\r\n\r\nbody\r\n.\r\n")
        assert read_reply(s).startswith(b"250 2.0.0 Ok: queued as ")
    assert closed_by_server(s)
    deliver_one(server)
