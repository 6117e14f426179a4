"""events.jsonl: one JSON object per line with the honeypot ecosystem's common fields, and the
session's story told in order; HTTP probes are answered like Postfix, logged and closed."""
from __future__ import annotations

import datetime
import json
import socket

from relaybait_testlib import wait_for

COMMON = ("timestamp", "eventid", "session", "sensor", "src_ip", "src_port", "dst_ip", "dst_port", "protocol")


def test_http_probe_is_answered_logged_and_closed(server):
    s = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=10)
    assert s.recv(1000).startswith(b"220 ")
    s.sendall(b"GET /admin HTTP/1.1\r\nHost: mx1.example.net\r\n\r\n")
    assert s.recv(1000) == b"221 2.7.0 Error: I can break rules, too. Goodbye.\r\n"
    assert s.recv(1000) == b"", "closed after the reply"
    local_port = s.getsockname()[1]
    s.close()

    def probe_events():
        return [e for e in server.events() if e.get("src_port") == local_port]

    events = wait_for(lambda: [e for e in probe_events() if e["eventid"] == "session.close"] and probe_events(),
                      10, what="the probe session's events")
    ids = [e["eventid"] for e in events]
    assert ids[0] == "session.connect" and ids[-1] == "session.close", ids
    probe = [e for e in events if e["eventid"] == "http.probe"]
    assert probe and "GET /admin HTTP/1.1" in probe[0]["request"], events
    assert events[-1]["outcome"] == "http_probe"
    row = wait_for(lambda: server.query("SELECT * FROM sessions WHERE peer_port = ?", (local_port,)), 10,
                   what="the session row")[0]
    assert row["outcome"] == "http_probe"


def test_every_event_has_the_common_fields(server):
    s = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=10)
    s.recv(1000)
    s.sendall(b"EHLO fields.example.org\r\nQUIT\r\n")
    while s.recv(4096):
        pass
    s.close()
    wait_for(lambda: any(e.get("eventid") == "smtp.helo" and e.get("helo") == "fields.example.org"
                         for e in server.events()), 10, what="the helo event")
    raw = (server.data_dir / "events.jsonl").read_bytes().decode("utf-8")  # valid UTF-8 throughout
    for line in raw.splitlines():
        event = json.loads(line)
        for field in COMMON:
            assert field in event, (field, event)
        assert event["sensor"] == "mx1.example.net"
        assert event["dst_ip"] == "127.0.0.1" and event["src_ip"] == "127.0.0.1"
        assert event["protocol"] in ("smtp", "smtps", "submission")
        stamp = datetime.datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert abs((datetime.datetime.utcnow() - stamp).total_seconds()) < 600


def test_attacker_bytes_keep_the_log_valid_json(server):
    import base64
    s = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=10)
    s.recv(1000)
    # Command lines must be UTF-8 (Postfix answers 500 otherwise), but a decoded AUTH password
    # can be any bytes: here not UTF-8 at all.
    blob = base64.b64encode(b"\0bytes-user\0p\xff\xfe\x00ss\xe9").decode()
    s.sendall(b"EHLO fields.example.org\r\nAUTH PLAIN " + blob.encode() + b"\r\nQUIT\r\n")
    while s.recv(4096):
        pass
    s.close()
    captured = wait_for(lambda: [e for e in server.events() if e.get("eventid") == "auth.captured"
                                 and e.get("username") == "bytes-user"], 10, what="the auth event")
    assert captured[0]["password"].startswith("p\ufffd"), captured  # replaced, still valid JSON
    raw = (server.data_dir / "events.jsonl").read_bytes()
    raw.decode("utf-8")  # the whole log stays valid UTF-8
    # ... while the database keeps the exact bytes for the analyst.
    creds = wait_for(lambda: server.query("SELECT raw, CAST(password AS BLOB) AS password FROM credentials "
                                          "WHERE username = 'bytes-user'"), 10, what="the credential row")
    assert creds[0]["raw"] == blob
    assert creds[0]["password"] == b"p\xff\xfe\x00ss\xe9"
