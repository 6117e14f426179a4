"""Safety invariant 1: a 250 after DATA means the message is on disk (fsync) and in the
database. SIGKILL the server mid-DATA (nothing stored) and right after many acknowledgements
(every acknowledged queue id is in the database and in new/), then restart on the same data."""
from __future__ import annotations

import smtplib
import socket
import threading
import time
import uuid

from relaybait_testlib import make_message, queue_id_from, read_reply, split_trace, wait_for


def _count_messages(server) -> int:
    return server.query("SELECT COUNT(*) AS n FROM messages")[0]["n"]


def test_kill9_mid_data_stores_nothing(make_server):
    server = make_server()
    sock = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=10)
    f = sock.makefile("rb")
    assert read_reply(f).startswith(b"220")
    for cmd, code in ((b"EHLO half.example.org\r\n", b"250"), (b"MAIL FROM:<a@example.org>\r\n", b"250"),
                      (b"RCPT TO:<victim@example.com>\r\n", b"250"), (b"DATA\r\n", b"354")):
        sock.sendall(cmd)
        assert read_reply(f).startswith(code)
    half = make_message("half " + uuid.uuid4().hex, body=b"x" * 200_000 + b"\r\n")
    sock.sendall(half[: len(half) // 2])
    time.sleep(0.5)  # let the server write part of it to tmp/
    server.kill9()
    sock.close()

    server.start(server.offset)  # same data dir, same ports
    assert _count_messages(server) == 0
    assert server.all_maildir_files() == [], server.all_maildir_files()
    # and it works
    msg = make_message("after restart " + uuid.uuid4().hex)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        s.mail("a@example.org")
        s.rcpt("victim@example.com")
        code, resp = s.data(msg)
        assert code == 250, resp
    row = wait_for(lambda: server.message_by_queue_id(queue_id_from(resp)), 10, what="the new message")
    split_trace(server.message_file(row).read_bytes(), msg)
    tmp_dir = server.data_dir / "maildir" / "tmp"
    leftovers = list(tmp_dir.iterdir()) if tmp_dir.exists() else []
    print(f"tmp/ after restart: {len(leftovers)} file(s)")


def test_kill9_after_acknowledgements_loses_nothing(make_server):
    server = make_server()
    acked: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int):
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
                    while not stop.is_set():
                        msg = make_message(f"durable {n} {uuid.uuid4().hex}",
                                           body=(f"client {n}\r\n".encode() * 50))
                        s.mail(f"c{n}@example.org")
                        s.rcpt("victim@example.com")
                        code, resp = s.data(msg)
                        if code == 250:
                            with lock:
                                acked[queue_id_from(resp)] = msg
            except (OSError, smtplib.SMTPException):
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 300:
                break
        time.sleep(0.01)
    server.kill9()  # while the clients are still sending
    stop.set()
    for t in threads:
        t.join(15)
    with lock:
        snapshot = dict(acked)
    assert len(snapshot) >= 50, f"only {len(snapshot)} messages acknowledged in 30 s"

    # Straight after the crash, before any restart: the database and new/ have every one.
    missing_db, missing_file, wrong = [], [], []
    for qid, msg in snapshot.items():
        row = server.message_by_queue_id(qid)
        if row is None:
            missing_db.append(qid)
            continue
        path = server.message_file(row)
        if path.parent.name != "new" or not path.is_file():
            missing_file.append(qid)
        elif not path.read_bytes().endswith(msg):
            wrong.append(qid)
    assert not (missing_db or missing_file or wrong), (
        f"{len(snapshot)} acknowledged; missing from DB: {missing_db[:10]} ({len(missing_db)}), "
        f"missing in new/: {missing_file[:10]} ({len(missing_file)}), content differs: {wrong[:10]}")
    print(f"{len(snapshot)} acknowledged messages all durable after SIGKILL")

    # Restart: still all there; every row has its file (a new/ file without a row is allowed:
    # the crash may fall between the rename and the commit of a message never acknowledged).
    server.start(server.offset)
    rows = server.query("SELECT queue_id, maildir_path FROM messages")
    assert {r["queue_id"] for r in rows} >= set(snapshot)
    on_disk = {str(p.relative_to(server.data_dir)) for p in server.all_maildir_files()}
    in_db = {r["maildir_path"] for r in rows}
    assert in_db <= on_disk, f"rows whose file is missing: {sorted(in_db - on_disk)[:10]}"
