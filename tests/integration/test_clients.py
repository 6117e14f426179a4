"""Real SMTP clients (Python's smtplib) against relaybait; asserts what was STORED: the Maildir
file (trace headers + the exact bytes sent), the messages/recipients/credentials rows, the
events, for plain SMTP, STARTTLS, implicit TLS, submission + AUTH PLAIN/LOGIN/CRAM-MD5."""
from __future__ import annotations

import base64
import hashlib
import hmac
import smtplib
import uuid

import pytest

from relaybait_testlib import (header, make_message, queue_id_from, split_trace,
                               unverified_context, wait_for)

SENDER = "alice@example.org"
HELO = "client.example.org"


def deliver(smtp: smtplib.SMTP, msg: bytes, rcpts: list[str], sender: str = SENDER,
            mail_options: tuple = ()) -> str:
    """MAIL/RCPT/DATA by hand, so the DATA reply (with the queue id) is visible."""
    smtp.ehlo_or_helo_if_needed()  # smtplib's mail() does not greet; a session without EHLO is "from unknown"
    code, resp = smtp.mail(sender, list(mail_options))
    assert code == 250, (code, resp)
    for r in rcpts:
        code, resp = smtp.rcpt(r)
        assert code == 250, (r, code, resp)
    code, resp = smtp.data(msg)
    assert code == 250, (code, resp)
    return queue_id_from(resp)


def stored(server, qid: str, msg: bytes):
    """The message row and the trace headers for queue id `qid`; checks file == headers + msg."""
    row = wait_for(lambda: server.message_by_queue_id(qid), 10, what=f"message {qid} in the DB")
    data = server.message_file(row).read_bytes()
    assert server.message_file(row).parent.name == "new"
    trace = split_trace(data, msg)
    assert row["size"] == len(msg), (row["size"], len(msg))
    assert row["sha256"] == hashlib.sha256(msg).hexdigest()
    return row, trace


def assert_trace(row, trace, server, rcpts, listener, helo=HELO, sender=SENDER, tls=None, auth_user=None):
    received = header(trace, "Received")
    assert received, f"no Received header in {trace}"
    r0 = received[0]
    assert server.hostname in r0 and "127.0.0.1" in r0 and helo in r0, r0
    x_values = " | ".join(v for n, v in trace if n.lower().startswith("x-"))
    for needle in ["127.0.0.1", str(row["peer_port"]), helo, sender, row["session_id"], *rcpts]:
        assert needle in x_values, f"{needle!r} not in the X- trace headers: {trace}"
    if auth_user:
        assert auth_user in x_values, f"AUTH user {auth_user!r} not in the trace headers: {trace}"
    if tls:
        version, cipher = tls
        assert version in r0 and cipher in r0, f"TLS {version} {cipher} not in Received: {r0}"
        assert row["tls_version"] == version and row["tls_cipher"] == cipher, row
    else:
        assert not row["tls_version"], row
    assert row["listener"] == listener
    assert row["peer_ip"] == "127.0.0.1"
    assert row["mail_from"] == sender
    assert row["helo_name"] == helo
    assert server.recipients_of(row) == rcpts
    # the events of that session
    # events.jsonl is written by a background thread: wait until the message's event is there.
    def session_events():
        found = [e for e in server.events() if e.get("session") == row["session_id"]]
        return found if any(e["eventid"] == "message.received" for e in found) else None
    events = wait_for(session_events, 10, what="events of the session")
    ids = [e["eventid"] for e in events]
    assert "session.connect" in ids and "message.received" in ids, ids
    for e in events:
        assert e["src_ip"] == "127.0.0.1" and e["dst_port"] == server.ports[listener], e
        assert e["protocol"] == listener, e
        for key in ("timestamp", "sensor", "src_port", "dst_ip"):
            assert key in e, (key, e)


def test_plain_smtp_multiple_recipients(server):
    rcpts = ["victim@example.com", "second@example.net", "Third.User+tag@example.org"]
    msg = make_message("plain " + uuid.uuid4().hex)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname=HELO, timeout=30) as s:
        qid = deliver(s, msg, rcpts)
    row, trace = stored(server, qid, msg)
    assert_trace(row, trace, server, rcpts, "smtp")
    assert row["folder"] == ""
    assert not row["auth_username"]


def test_starttls_port_25(server):
    msg = make_message("starttls " + uuid.uuid4().hex)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname=HELO, timeout=30) as s:
        s.starttls(context=unverified_context())
        tls = (s.sock.version(), s.sock.cipher()[0])
        qid = deliver(s, msg, ["victim@example.com"])
    row, trace = stored(server, qid, msg)
    assert_trace(row, trace, server, ["victim@example.com"], "smtp", tls=tls)


def test_implicit_tls_port_465(server):
    msg = make_message("smtps " + uuid.uuid4().hex)
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["smtps"], local_hostname=HELO, timeout=30,
                          context=unverified_context()) as s:
        tls = (s.sock.version(), s.sock.cipher()[0])
        s.ehlo()
        # Like Postfix's submissions service, relaying needs AUTH (which the default policy grants).
        s.mail(SENDER)
        code, resp = s.rcpt("victim@example.com")
        assert code == 554 and b"Access denied" in resp, (code, resp)
        s.rset()
        _auth(s, "PLAIN", "spammer", "hunter2")
        qid = deliver(s, msg, ["victim@example.com"])
    row, trace = stored(server, qid, msg)
    assert_trace(row, trace, server, ["victim@example.com"], "smtps", tls=tls, auth_user="spammer")


def test_submission_requires_starttls(server):
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], local_hostname=HELO, timeout=30) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        assert not s.has_extn("auth"), "submission must not offer AUTH before STARTTLS"
        code, resp = s.mail(SENDER)
        assert code == 530, (code, resp)


def _auth(s: smtplib.SMTP, mechanism: str, user: str, password: str):
    s.user, s.password = user, password
    authobject = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login, "CRAM-MD5": s.auth_cram_md5}[mechanism]
    code, resp = s.auth(mechanism, authobject, initial_response_ok=(mechanism != "LOGIN"))
    assert code == 235, (mechanism, code, resp)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_submission_starttls_auth(server, mechanism):
    user = f"user-{mechanism.lower()}-{uuid.uuid4().hex[:8]}@example.org"
    password = "p@ss w0rd " + uuid.uuid4().hex[:6]
    msg = make_message(f"auth {mechanism} " + uuid.uuid4().hex)
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], local_hostname=HELO, timeout=30) as s:
        s.starttls(context=unverified_context())
        tls = (s.sock.version(), s.sock.cipher()[0])
        s.ehlo(HELO)
        assert s.has_extn("auth")
        _auth(s, mechanism, user, password)
        qid = deliver(s, msg, ["victim@example.com"])
    row, trace = stored(server, qid, msg)
    assert_trace(row, trace, server, ["victim@example.com"], "submission", tls=tls, auth_user=user)
    assert row["auth_username"] == user

    creds = wait_for(lambda: [c for c in server.credentials() if c["username"] == user], 10,
                     what="the credentials row")
    assert len(creds) == 1, creds
    c = creds[0]
    assert c["mechanism"] == mechanism
    assert c["session_id"] == row["session_id"]
    assert c["peer_ip"] == "127.0.0.1"
    assert c["listener"] == "submission"
    assert c["accepted"] in (1, True)
    assert c["raw"], c
    if mechanism == "CRAM-MD5":
        challenge = c["challenge"]
        assert challenge, c
        try:  # stored decoded ("<...@host>") or as the base64 sent
            plain_challenge = challenge if challenge.startswith("<") else base64.b64decode(challenge).decode()
        except Exception:
            plain_challenge = challenge
        digest = hmac.new(password.encode(), plain_challenge.encode(), "md5").hexdigest()
        assert digest in (c["password"], c["raw"]) or digest in base64.b64decode(c["raw"]).decode(), c
    else:
        assert c["password"] == password, c

    events = wait_for(lambda: [e for e in server.events()
                               if e.get("eventid") == "auth.captured" and e.get("session") == row["session_id"]],
                      10, what="the auth.captured event")
    e = events[0]
    assert e["src_ip"] == "127.0.0.1" and e["protocol"] == "submission", e
    assert user in str(e), e


def test_auth_plain_on_port_25_before_tls(server):
    """The persona offers AUTH on port 25 before TLS: credentials are captured there too."""
    user, password = "plainuser-" + uuid.uuid4().hex[:8], "hunter2"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname=HELO, timeout=30) as s:
        s.ehlo(HELO)
        _auth(s, "PLAIN", user, password)
    creds = wait_for(lambda: [c for c in server.credentials() if c["username"] == user], 10,
                     what="the credentials row")
    assert creds[0]["password"] == password and creds[0]["listener"] == "smtp"
    raw = base64.b64decode(creds[0]["raw"])
    assert raw == b"\0" + user.encode() + b"\0" + password.encode(), raw


def test_dot_stuffing_round_trip(server):
    body = (b"line one\r\n.\r\n..two dots\r\n...three\r\n.leading dot\r\n . space dot\r\n"
            b"end.\r\n.\r\n")  # smtplib stuffs these; relaybait must unstuff them
    msg = make_message("dots " + uuid.uuid4().hex, body=body)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname=HELO, timeout=30) as s:
        qid = deliver(s, msg, ["victim@example.com"])
    row, trace = stored(server, qid, msg)
    data = server.message_file(row).read_bytes()
    assert data.endswith(body)


def test_8bit_body_intact(server):
    body = ("Grüße aus Köln — ünïcödé ✓ 日本語\r\n").encode() + bytes(range(0x80, 0x100)).replace(b"\r", b"") + b"\r\n"
    msg = make_message("8bit " + uuid.uuid4().hex, body=body,
                       extra_headers=b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                     b"Content-Transfer-Encoding: 8bit\r\n")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname=HELO, timeout=30) as s:
        s.ehlo(HELO)
        assert s.has_extn("8bitmime")
        qid = deliver(s, msg, ["victim@example.com"], mail_options=("BODY=8BITMIME",))
    row, _ = stored(server, qid, msg)
    assert "BODY=8BITMIME" in (row["mail_parameters"] or "").upper(), row


def test_two_messages_one_session(server):
    msgs = [make_message(f"first-of-two {uuid.uuid4().hex}"), make_message(f"second-of-two {uuid.uuid4().hex}")]
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname=HELO, timeout=30) as s:
        qids = [deliver(s, m, [f"r{i}@example.com"]) for i, m in enumerate(msgs)]
    assert qids[0] != qids[1]
    rows = [stored(server, q, m)[0] for q, m in zip(qids, msgs)]
    assert rows[0]["session_id"] == rows[1]["session_id"]
    assert server.recipients_of(rows[0]) == ["r0@example.com"]
    assert server.recipients_of(rows[1]) == ["r1@example.com"]
    session = wait_for(lambda: (lambda s: s if s and s.get("ended_at") else None)(
        server.session_row(rows[0]["session_id"])), 10, what="the session row, closed")
    assert session["messages"] == 2 and session["helo_name"] == HELO and session["outcome"] == "quit", session
