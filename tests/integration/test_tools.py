"""Third-party tools against relaybait (swaks, openssl s_client, curl, a raw BDAT client) and
the operator CLI reading back what was stored."""
from __future__ import annotations

import email
import email.policy
import hashlib
import os
import re
import socket
import subprocess
import time
import uuid

from relaybait_testlib import (as_list, make_message, queue_id_from, read_reply, require_tool,
                               split_trace, wait_for)


def run(cmd, timeout=60, input=None) -> subprocess.CompletedProcess:
    require_tool(cmd[0])
    proc = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)
    return proc


def stored_by_queue_id(server, qid):
    row = wait_for(lambda: server.message_by_queue_id(qid), 10, what=f"message {qid} in the DB")
    return row, server.message_file(row).read_bytes()


def stored_by_token(server, token: str):
    """The message row and file whose content contains `token` (tools that hide the queue id)."""
    def find():
        for path in server.all_maildir_files():
            if token.encode() in path.read_bytes():
                rel = str(path.relative_to(server.data_dir))
                rows = server.query("SELECT * FROM messages WHERE maildir_path = ?", (rel,))
                if rows:
                    return rows[0], path.read_bytes()
        return None
    return wait_for(find, 10, what=f"a stored message containing {token}")


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


# ------------------------------------------------------------------------------------------------
# swaks

def test_swaks_pipelining(server):
    token = uuid.uuid4().hex
    p = run(["swaks", "--server", f"127.0.0.1:{server.ports['smtp']}", "--pipeline",
             "--helo", "swaks.example.org", "--from", "spammer@example.org",
             "--to", "a@example.com,b@example.com", "--header", f"Subject: swaks {token}",
             "--body", f"pipelined body {token}"])
    out = p.stdout.decode("latin-1")
    assert p.returncode == 0, out + p.stderr.decode("latin-1")
    assert "PIPELINING" in out
    qid = queue_id_from(out)
    row, data = stored_by_queue_id(server, qid)
    assert f"pipelined body {token}".encode() in data
    assert row["mail_from"] == "spammer@example.org"
    assert server.recipients_of(row) == ["a@example.com", "b@example.com"]
    assert row["helo_name"] == "swaks.example.org"


def test_swaks_attachment_intact(server, tmp_path):
    blob = os.urandom(200_000) + b"\x00\xff\r\n.\r\n" + os.urandom(1000)
    attachment = tmp_path / "payload.bin"
    attachment.write_bytes(blob)
    token = uuid.uuid4().hex
    p = run(["swaks", "--server", f"127.0.0.1:{server.ports['smtp']}", "--from", "a@example.org",
             "--to", "victim@example.com", "--header", f"Subject: attach {token}",
             "--attach-type", "application/octet-stream", "--attach", f"@{attachment}"])
    out = p.stdout.decode("latin-1")
    assert p.returncode == 0, out[-3000:] + p.stderr.decode("latin-1")
    row, data = stored_by_queue_id(server, queue_id_from(out))
    msg = parse(data)
    parts = [part for part in msg.walk() if part.get_content_type() == "application/octet-stream"]
    assert parts, f"no attachment part in the stored message: {data[:2000]!r}"
    assert parts[0].get_payload(decode=True) == blob
    assert row["sha256"] != hashlib.sha256(blob).hexdigest()  # the message, not the attachment


def test_swaks_starttls_auth_submission(server):
    token = uuid.uuid4().hex
    user = f"swaks-{token[:8]}"
    p = run(["swaks", "--server", f"127.0.0.1:{server.ports['submission']}", "--tls",
             "--auth", "LOGIN", "--auth-user", user, "--auth-password", "Winter2024!",
             "--from", "a@example.org", "--to", "victim@example.com",
             "--header", f"Subject: swaks tls {token}"])
    out = p.stdout.decode("latin-1")
    assert p.returncode == 0, out[-3000:] + p.stderr.decode("latin-1")
    row, _ = stored_by_queue_id(server, queue_id_from(out))
    assert row["auth_username"] == user and row["tls_version"], row
    creds = [c for c in server.credentials() if c["username"] == user]
    assert creds and creds[0]["password"] == "Winter2024!" and creds[0]["mechanism"] == "LOGIN", creds


# ------------------------------------------------------------------------------------------------
# BDAT: swaks 20201014 has no CHUNKING support, so a raw socket client drives it.

def test_bdat_chunks_raw_socket(server):
    token = uuid.uuid4().hex
    chunks = [f"Subject: bdat {token}\r\nFrom: <a@example.org>\r\n".encode(),
              b"\r\nbody line\r\n.\r\n..not stuffed in BDAT\r\n",
              os.urandom(5000) + b"\r\nend\r\n"]
    sock = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=20)
    f = sock.makefile("rb")
    assert read_reply(f).startswith(b"220 ")
    sock.sendall(b"EHLO bdat.example.org\r\n")
    assert b"CHUNKING" in read_reply(f)
    sock.sendall(b"MAIL FROM:<a@example.org>\r\n")
    assert read_reply(f).startswith(b"250 ")
    sock.sendall(b"RCPT TO:<victim@example.com>\r\n")
    assert read_reply(f).startswith(b"250 ")
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        sock.sendall(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
        reply = read_reply(f)
        assert reply.startswith(b"250 "), reply
    qid = queue_id_from(reply)
    sock.sendall(b"QUIT\r\n")
    read_reply(f)
    sock.close()
    row, data = stored_by_queue_id(server, qid)
    original = b"".join(chunks)
    split_trace(data, original)
    assert row["via_bdat"] in (1, True)
    assert row["size"] == len(original)


# ------------------------------------------------------------------------------------------------
# openssl s_client and curl

def test_openssl_s_client_starttls(server):
    require_tool("openssl")
    token = uuid.uuid4().hex
    proc = subprocess.Popen(["openssl", "s_client", "-starttls", "smtp", "-crlf", "-quiet",
                             "-connect", f"127.0.0.1:{server.ports['smtp']}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    script = ["EHLO openssl.example.org", "MAIL FROM:<ossl@example.org>", "RCPT TO:<victim@example.com>",
              "DATA", f"Subject: openssl {token}", "", f"sent through openssl s_client {token}", ".", "QUIT"]
    try:
        for line in script:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
            time.sleep(0.15)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode("latin-1")
    assert "221 2.0.0 Bye" in text, text + err.decode("latin-1")
    row, data = stored_by_queue_id(server, queue_id_from(text))
    assert f"sent through openssl s_client {token}\r\n".encode() in data
    assert row["tls_version"] and row["mail_from"] == "ossl@example.org", row


def _curl_message(tmp_path, token):
    body = make_message(f"curl {token}", body=f"curl body {token}\r\n".encode())
    path = tmp_path / f"{token}.eml"
    path.write_bytes(body)
    return body, path


def test_curl_smtp(server, tmp_path):
    token = uuid.uuid4().hex
    body, path = _curl_message(tmp_path, token)
    p = run(["curl", "-sS", "--max-time", "30", f"smtp://127.0.0.1:{server.ports['smtp']}/curl.example.org",
             "--mail-from", "curl@example.org", "--mail-rcpt", "victim@example.com",
             "--mail-rcpt", "other@example.net", "--upload-file", str(path)])
    assert p.returncode == 0, p.stderr
    row, data = stored_by_token(server, token)
    split_trace(data, body)
    assert row["helo_name"] == "curl.example.org"
    assert server.recipients_of(row) == ["victim@example.com", "other@example.net"]


def test_curl_smtps_and_starttls(server, tmp_path):
    # smtps relays only after AUTH, like Postfix's submissions service; curl authenticates with --user.
    for url, extra in ((f"smtps://127.0.0.1:{server.ports['smtps']}", ["--user", "curl:secret"]),
                       (f"smtp://127.0.0.1:{server.ports['smtp']}", ["--ssl-reqd"])):
        token = uuid.uuid4().hex
        body, path = _curl_message(tmp_path, token)
        p = run(["curl", "-sS", "-k", "--max-time", "30", url, *extra, "--mail-from", "curl@example.org",
                 "--mail-rcpt", "victim@example.com", "--upload-file", str(path)])
        assert p.returncode == 0, (url, p.stderr)
        row, data = stored_by_token(server, token)
        split_trace(data, body)
        assert row["tls_version"], (url, row)


# ------------------------------------------------------------------------------------------------
# the CLI reads back what was stored

def test_cli_read_commands(server):
    import smtplib
    token = uuid.uuid4().hex
    msg = make_message(f"cli {token}")
    user = f"cli-{token[:8]}"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname="cli.example.org", timeout=30) as s:
        s.ehlo("cli.example.org")
        s.user, s.password = user, "cli-secret"
        assert s.auth("PLAIN", s.auth_plain)[0] == 235
        s.mail("cli@example.org")
        s.rcpt("victim@example.com")
        code, resp = s.data(msg)
        qid = queue_id_from(resp)
    row, data = stored_by_queue_id(server, qid)

    # messages list --json
    listed = as_list(server.cli_json("messages", "list"), "messages")
    mine = [m for m in listed if m.get("queue_id") == qid]
    assert mine, f"{qid} not in messages list --json: {listed[:3]}"
    assert mine[0].get("mail_from") == "cli@example.org"

    # messages show ID --raw is the Maildir file, byte for byte
    raw = server.cli("messages", "show", str(row["id"]), "--raw").stdout
    assert raw == data, f"--raw differs from the Maildir file ({len(raw)} vs {len(data)} bytes)"
    shown = server.cli("messages", "show", str(row["id"])).stdout.decode("utf-8", "replace")
    assert qid in shown and f"cli {token}" in shown and "victim@example.com" in shown, shown[:2000]
    shown_json = server.cli_json("messages", "show", str(row["id"]))
    assert qid in str(shown_json)

    # sessions list / show ID contains the transcript
    sessions = as_list(server.cli_json("sessions", "list"), "sessions")
    assert any(s.get("id") == row["session_id"] for s in sessions), sessions[:3]
    # The session's full row (transcript, end) is written after the session ends, asynchronously
    # (it waits up to the store's side_linger for messages to ride with, then a group commit):
    # until then `sessions show` has the stub written with the message.
    def ended_transcript():
        out = server.cli("sessions", "show", row["session_id"]).stdout.decode("utf-8", "replace")
        return out if "c: quit" in out.lower() else None
    transcript = wait_for(ended_transcript, timeout=20, what="the ended session's transcript")
    # smtplib writes its verbs in lower case ("mail FROM:"); the transcript keeps what was sent.
    for needle in ("C: ehlo cli.example.org", "C: mail FROM:<cli@example.org>", "C: rcpt TO:<victim@example.com>",
                   "C: data", "S: 354", qid, "C: quit", "S: 221", "S: 220 mx1.example.net ESMTP Postfix"):
        assert needle.lower() in transcript.lower(), f"{needle!r} not in sessions show output:\n{transcript[:3000]}"
    session_json = server.cli_json("sessions", "show", row["session_id"])
    assert "ehlo cli.example.org" in str(session_json).lower()

    # credentials list --json
    creds = as_list(server.cli_json("credentials", "list"), "credentials")
    mine = [c for c in creds if c.get("username") == user]
    assert mine and mine[0].get("password") == "cli-secret" and mine[0].get("mechanism") == "PLAIN", creds[:3]
    assert mine[0].get("session_id") == row["session_id"]
    text = server.cli("credentials", "list").stdout.decode("utf-8", "replace")
    assert user in text

    # unknown ids are errors, not crashes
    bad = server.cli("messages", "show", "999999999", check=False)
    assert bad.returncode in (1, 2), bad
    assert re.search(rb"not found|no such|unknown", bad.stderr + bad.stdout, re.I), bad
