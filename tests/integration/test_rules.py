"""Rules in `relaybait serve`: every hook's actions on the wire and in the store, reloading
(SIGHUP and `relaybait rules reload`) with the last good rules kept, and the operator commands
`relaybait rules check|test|apply`."""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import time
import uuid
from pathlib import Path

from conftest import relaybait_config, toml_string
from relaybait_testlib import binary_path, make_message, pick_port_offset, queue_id_from, read_reply, wait_for

IDENTITY = '[identity]\nipv4 = ["127.0.0.1"]\ninterface_addresses = false\n'

HOOK_RULES = """\
[[rule]]
name = "refuse-submission"
kind = "scan"
hook = "connect"
when = 'client_ip in "127.0.0.1" and listener equals "submission"'
[rule.actions]
tags = ["blocked"]
reply = { code = 554, text = "5.7.1 Service unavailable; client host blocked" }

[[rule]]
name = "bad-helo"
kind = "scan"
hook = "ehlo"
when = 'helo equals "scanner.bad.test"'
[rule.actions]
reply = { code = 550, text = "5.7.1 Go away" }

[[rule]]
name = "blocked-login"
kind = "scan"
hook = "auth"
when = 'auth_user equals "blocked-user"'
[rule.actions]
reply = { code = 535, text = "5.7.8 Error: authentication failed: go away" }

[[rule]]
name = "slow-sender"
kind = "spam"
hook = "mail"
when = 'mail_from_domain equals "slow.test"'
[rule.actions]
tarpit_ms = 1500

[[rule]]
name = "greylist-domain"
kind = "spam"
hook = "rcpt"
when = 'rcpt_to endswith "@greylisted.test"'
[rule.actions]
reply = { code = 451, text = "4.7.1 Greylisted, try again later" }

[[rule]]
name = "campaign"
kind = "phishing"
when = 'subject contains "campaign-7"'
[rule.actions]
folder = "Campaign"
tags = ["campaign", "wave-7"]
reply = { code = 550, text = "5.7.1 Message rejected" }

[[rule]]
name = "slow-data"
kind = "spam"
when = 'subject contains "slow-data"'
[rule.actions]
tags = ["slow"]
tarpit_ms = 1500

[[rule]]
name = "drop-noise"
kind = "spam"
when = 'subject contains "drop-me"'
[rule.actions]
drop = true
"""


def rules_server(make_server, tmp_path: Path, rules_text: str, name: str = "rules.toml"):
    rules_file = tmp_path / name
    rules_file.write_text(rules_text)
    config = relaybait_config(extra=IDENTITY + f"\n[rules]\nfile = {toml_string(str(rules_file))}\n")
    return make_server(config), rules_file


def cli(server, *args, timeout=60):
    proc = server.cli(*args, "--config", str(server.config_file), check=False, timeout=timeout)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def send_ok(server, subject: str, body: bytes = b"hello\r\n", sender="a@example.org",
            rcpt="victim@example.com") -> dict:
    msg = make_message(subject, body=body, sender=sender, to=rcpt)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        s.mail(sender)
        s.rcpt(rcpt)
        code, resp = s.data(msg)
    assert code == 250, f"{subject}: {code} {resp!r}"
    qid = queue_id_from(resp)
    return wait_for(lambda: server.message_by_queue_id(qid), 10, what=f"message {qid}")


def row_by_subject(server, token: str) -> dict:
    rows = wait_for(lambda: server.query("SELECT * FROM messages WHERE header_subject LIKE ?", (f"%{token}%",)),
                    10, what=f"the row of the message '{token}'")
    assert len(rows) == 1, rows
    return rows[0]


def status(server) -> dict:
    path = server.data_dir / "rules-status.json"
    return json.loads(path.read_text())


def wait_generation_above(server, generation: int, timeout=10) -> dict:
    def newer():
        try:
            s = status(server)
        except (OSError, ValueError):
            return None
        return s if s["generation"] > generation else None
    return wait_for(newer, timeout, what=f"rules-status.json generation > {generation}")


# ------------------------------------------------------------------------------------------------
# each hook

def test_connect_rule_replaces_the_banner(make_server, tmp_path):
    server, _ = rules_server(make_server, tmp_path, HOOK_RULES)
    s = socket.create_connection(("127.0.0.1", server.ports["submission"]), timeout=10)
    f = s.makefile("rb")
    first = read_reply(f)
    assert first.startswith(b"554 "), f"expected 554 instead of the banner, got {first!r}"
    assert b"client host blocked" in first, first
    s.settimeout(5)
    rest = f.read()
    assert rest == b"", f"the server sent more after the 554 and did not close: {rest!r}"
    s.close()
    # the same client on the smtp listener gets the banner
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as c:
        assert c.noop()[0] == 250
    matches = wait_for(lambda: [e for e in server.events() if e.get("eventid") == "rule.match"
                                and e.get("rule") == "refuse-submission"], 10, what="the connect rule.match event")
    assert matches[0]["hook"] == "connect" and matches[0]["kind"] == "scan", matches


def test_ehlo_mail_rcpt_rules(make_server, tmp_path):
    server, _ = rules_server(make_server, tmp_path, HOOK_RULES)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as c:
        code, resp = c.ehlo("scanner.bad.test")
        assert code == 550 and b"Go away" in resp, (code, resp)
        code, resp = c.ehlo("fine.example.org")
        assert code == 250, (code, resp)

        code, resp = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0blocked-user\0secret1").decode())
        assert code == 535 and b"go away" in resp, (code, resp)
        code, resp = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0normal-user\0secret1").decode())
        assert code == 235, (code, resp)

        started = time.monotonic()
        code, resp = c.mail("fast@example.org")
        fast = time.monotonic() - started
        assert code == 250, (code, resp)
        c.rset()
        started = time.monotonic()
        code, resp = c.mail("someone@slow.test")
        slow = time.monotonic() - started
        assert code == 250, (code, resp)
        assert slow >= 1.4, f"MAIL FROM a slow.test sender answered after {slow:.2f}s, tarpit_ms = 1500"
        assert fast < 1.0, f"MAIL FROM a normal sender took {fast:.2f}s"

        assert c.rcpt("ok@fine.test")[0] == 250
        code, resp = c.rcpt("someone@greylisted.test")
        assert code == 451 and b"Greylisted" in resp, (code, resp)
        assert c.rcpt("ok2@fine.test")[0] == 250
        code, resp = c.data(make_message("after greylist " + uuid.uuid4().hex))
        assert code == 250, (code, resp)
    row = wait_for(lambda: server.message_by_queue_id(queue_id_from(resp)), 10, what="the message")
    assert server.recipients_of(row) == ["ok@fine.test", "ok2@fine.test"]
    expected = {"bad-helo": "ehlo", "blocked-login": "auth", "slow-sender": "mail", "greylist-domain": "rcpt"}

    def hooks():  # events.jsonl is written by a background thread: wait for it like the other tests
        found = {e["rule"]: e["hook"] for e in server.events() if e.get("eventid") == "rule.match"}
        return found if all(found.get(rule) == hook for rule, hook in expected.items()) else None
    wait_for(hooks, 10, what=f"rule.match events {expected}")


def test_data_rule_folder_tags_and_reply(make_server, tmp_path):
    server, _ = rules_server(make_server, tmp_path, HOOK_RULES)
    token = "campaign-7 " + uuid.uuid4().hex
    msg = make_message(token)
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as c:
        c.mail("a@example.org")
        c.rcpt("victim@example.com")
        code, resp = c.data(msg)
        assert code == 550 and b"Message rejected" in resp, (code, resp)
        assert c.noop()[0] == 250, "the session goes on after the rule's 550"
    row = row_by_subject(server, token)
    assert row["folder"] == ".Campaign", row
    assert row["rule"] == "campaign" and row["kind"] == "phishing", row
    assert json.loads(row["tags"]) == ["campaign", "wave-7"], row["tags"]
    assert not row["dropped"]
    path = server.message_file(row)
    assert path.parent == server.data_dir / "maildir" / ".Campaign" / "new", path
    assert path.read_bytes().endswith(msg)
    ev = wait_for(lambda: [e for e in server.events() if e.get("eventid") == "rule.match"
                           and e.get("rule") == "campaign"], 10, what="the data rule.match event")
    assert ev[0]["hook"] == "data" and ev[0].get("queue_id") == row["queue_id"], ev

    # a message no rule matches: inbox, no rule
    plain = send_ok(server, "plain " + uuid.uuid4().hex)
    assert plain["folder"] == "" and not plain["rule"] and json.loads(plain["tags"] or "[]") == [], plain
    assert server.message_file(plain).parent == server.data_dir / "maildir" / "new"


def test_data_rule_tarpit_delays_the_250(make_server, tmp_path):
    server, _ = rules_server(make_server, tmp_path, HOOK_RULES)
    timings = {}
    for label in ("slow-data", "quick"):
        subject = f"{label} {uuid.uuid4().hex}"
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as c:
            c.mail("a@example.org")
            c.rcpt("victim@example.com")
            started = time.monotonic()
            code, resp = c.data(make_message(subject))
            timings[label] = time.monotonic() - started
            assert code == 250, (code, resp)
        row = wait_for(lambda: server.message_by_queue_id(queue_id_from(resp)), 10, what="the message")
        if label == "slow-data":
            assert row["rule"] == "slow-data" and json.loads(row["tags"]) == ["slow"], row
    assert timings["slow-data"] >= 1.4, f"DATA answered after {timings['slow-data']:.2f}s with tarpit_ms = 1500"
    assert timings["quick"] < 1.0, timings


TARPIT_PAST_THE_DEADLINE = """\
[[rule]]
name = "slow-banner"
kind = "scan"
hook = "connect"
when = 'listener equals "submission"'
[rule.actions]
tarpit_ms = 3000

[[rule]]
name = "slow-data"
kind = "spam"
when = 'subject contains "slow-data"'
[rule.actions]
tarpit_ms = 1500
"""


def test_tarpits_longer_than_the_idle_timeout(make_server, tmp_path):
    # idle_timeout_seconds = 1 is shorter than both tarpits. The banner's is cut by the deadline
    # (421, outcome timeout); the reply to a stored message is not: the client gets its 250
    # after the whole tarpit (else it would retry and the message be kept twice), then the 421.
    rules_file = tmp_path / "tarpits.toml"
    rules_file.write_text(TARPIT_PAST_THE_DEADLINE)
    server = make_server(relaybait_config(extra=(
        IDENTITY + "[limits]\nidle_timeout_seconds = 1\n" + f"\n[rules]\nfile = {toml_string(str(rules_file))}\n")))
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.ports["submission"]), timeout=10) as s:
        banner = s.recv(1000)
        waited = time.monotonic() - started
        assert banner.startswith(b"421 4.4.2 ") and b"timeout exceeded" in banner, (banner, waited)
        assert 0.8 <= waited <= 2.9, waited
    subject = f"slow-data {uuid.uuid4().hex}"
    c = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30)
    try:
        c.mail("a@example.org")
        c.rcpt("victim@example.com")
        started = time.monotonic()
        code, resp = c.data(make_message(subject))
        assert code == 250, (code, resp)
        assert time.monotonic() - started >= 1.4
        assert c.noop()[0] == 421  # then the deadline's farewell
    finally:
        c.close()
    rows = server.query("SELECT COUNT(*) AS n FROM messages WHERE header_subject = ?", (subject,))
    assert rows[0]["n"] == 1, rows


PRIORITY_RULES = """\
[[rule]]
name = "late-but-urgent"
kind = "phishing"
priority = 5
when = 'subject contains "prio-"'
[rule.actions]
folder = "Urgent"

[[rule]]
name = "disabled-first"
kind = "malware"
priority = 1
enabled = false
when = 'subject contains "prio-"'
[rule.actions]
folder = "Never"

[[rule]]
name = "first-in-file"
kind = "spam"
priority = 50
when = 'subject contains "prio-"'
[rule.actions]
folder = "Normal"

[[rule]]
name = "same-priority-later"
kind = "spam"
priority = 50
when = 'subject contains "prio-b"'
[rule.actions]
folder = "Later"
"""


def test_first_matching_rule_by_priority_decides(make_server, tmp_path):
    # file order for equal priorities, lower priority first, disabled rules skipped
    text = PRIORITY_RULES.replace("priority = 5\n", "priority = 100\n")
    server, rules_file = rules_server(make_server, tmp_path, text)
    row = send_ok(server, "prio-b " + uuid.uuid4().hex)
    assert (row["rule"], row["folder"]) == ("first-in-file", ".Normal"), row
    rules_file.write_text(PRIORITY_RULES)
    before = status(server)["generation"]
    os.kill(server.pid, signal.SIGHUP)
    assert wait_generation_above(server, before)["ok"] is True
    row = send_ok(server, "prio-b " + uuid.uuid4().hex)
    assert (row["rule"], row["folder"], row["kind"]) == ("late-but-urgent", ".Urgent", "phishing"), row
    assert not (server.data_dir / "maildir" / ".Never").exists()


def test_drop_rule_keeps_only_the_row(make_server, tmp_path):
    server, _ = rules_server(make_server, tmp_path, HOOK_RULES)
    token = "drop-me " + uuid.uuid4().hex
    row = send_ok(server, token)  # the client sees the normal 250
    assert row["dropped"] == 1 and row["rule"] == "drop-noise" and row["kind"] == "spam", row
    assert not row["maildir_path"], row
    files = [p for p in server.all_maildir_files() if token.split()[1].encode() in p.read_bytes()]
    assert files == [], files


# ------------------------------------------------------------------------------------------------
# reload

RULE_ALPHA = """\
[[rule]]
name = "alpha"
kind = "spam"
when = 'subject contains "alpha-"'
[rule.actions]
folder = "Alpha"
tags = ["alpha"]
"""
RULE_BETA = RULE_ALPHA.replace("alpha", "beta").replace("Alpha", "Beta")
RULE_GAMMA = RULE_ALPHA.replace("alpha", "gamma").replace("Alpha", "Gamma")
# line 5 of this rule: an unknown operator inside the condition
RULE_BROKEN = """\
[[rule]]
name = "broken"
kind = "spam"
description = "the next line is wrong"
when = 'subject contans "delta"'
"""


def test_sighup_reloads_and_keeps_the_last_good_rules(make_server, tmp_path):
    server, rules_file = rules_server(make_server, tmp_path, RULE_ALPHA)
    pid_file = server.data_dir / "relaybait.pid"
    assert pid_file.read_text().strip() == str(server.pid)
    first = status(server)
    assert first["ok"] is True and first["rules"] == 1 and first["enabled"] == 1, first
    assert Path(first["file"]) == rules_file, first
    assert send_ok(server, "alpha-1 " + uuid.uuid4().hex)["folder"] == ".Alpha"
    beta_before = send_ok(server, "beta-0 " + uuid.uuid4().hex)
    assert beta_before["folder"] == "", "beta applies before it was added"

    rules_file.write_text(RULE_ALPHA + "\n" + RULE_BETA)
    os.kill(server.pid, signal.SIGHUP)
    second = wait_generation_above(server, first["generation"])
    assert second["ok"] is True and second["rules"] == 2 and not second["error"], second
    assert send_ok(server, "beta-1 " + uuid.uuid4().hex)["folder"] == ".Beta"

    broken_text = RULE_ALPHA + "\n" + RULE_BETA + "\n" + RULE_BROKEN
    broken_line = broken_text.splitlines().index("when = 'subject contans \"delta\"'") + 1
    rules_file.write_text(broken_text)
    os.kill(server.pid, signal.SIGHUP)
    third = wait_generation_above(server, second["generation"])
    assert third["ok"] is False, third
    assert re.search(rf"{re.escape(str(rules_file))}:{broken_line}:\d+", third["error"]), \
        f"expected {rules_file}:{broken_line}:COL in the error, got {third['error']!r}"
    assert third["rules"] == 2, f"the status should describe the rules still active: {third}"
    assert server.alive()
    # the previous rules still apply
    row = send_ok(server, "beta-2 " + uuid.uuid4().hex)
    assert row["folder"] == ".Beta" and row["rule"] == "beta", row
    assert send_ok(server, "alpha-2 " + uuid.uuid4().hex)["folder"] == ".Alpha"

    # the same from the CLI: a bad file is refused (exit 2), a good one reloaded (exit 0)
    rc, out, err = cli(server, "rules", "reload")
    assert rc == 2, f"rules reload of a bad file exited {rc}\n{out}\n{err}"
    assert f"{rules_file}:{broken_line}:" in err, err
    rules_file.write_text(RULE_ALPHA + "\n" + RULE_BETA + "\n" + RULE_GAMMA)
    before = status(server)["generation"]
    rc, out, err = cli(server, "rules", "reload")
    assert rc == 0, f"rules reload exited {rc}\n{out}\n{err}"
    fourth = status(server)
    assert fourth["generation"] > before and fourth["ok"] is True and fourth["rules"] == 3, fourth
    assert send_ok(server, "gamma-1 " + uuid.uuid4().hex)["folder"] == ".Gamma"


def test_bad_rules_file_at_start_is_refused(tmp_path):
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(RULE_ALPHA + "\n[[rule]]\nname = \"x\"\nhook = data\n")
    bad_line = (RULE_ALPHA + "\n[[rule]]\nname = \"x\"\nhook = data\n").splitlines().index("hook = data") + 1
    config = tmp_path / "relaybait.toml"
    config.write_text(relaybait_config(extra=IDENTITY + f"\n[rules]\nfile = {toml_string(str(rules_file))}\n"))
    proc = subprocess.run([str(binary_path()), "serve", "--config", str(config), "--data-dir", str(tmp_path / "data"),
                           "--bind", "127.0.0.1", "--port-offset", str(pick_port_offset())],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, f"serve with a bad rules file exited {proc.returncode}\n{err}"
    assert re.search(rf"{re.escape(str(rules_file))}:{bad_line}:\d+", err), err


# ------------------------------------------------------------------------------------------------
# check / test / apply

def test_rules_check(make_server, tmp_path):
    server, rules_file = rules_server(make_server, tmp_path, RULE_ALPHA)
    rc, out, err = cli(server, "rules", "check", str(rules_file))
    assert rc == 0, f"{out}\n{err}"
    assert "OK" in out, out
    bad = tmp_path / "bad.toml"
    bad.write_text(RULE_ALPHA + "\n" + RULE_BROKEN)
    broken_line = bad.read_text().splitlines().index("when = 'subject contans \"delta\"'") + 1
    rc, out, err = cli(server, "rules", "check", str(bad))
    assert rc == 2, f"rules check of a bad file exited {rc}\n{out}\n{err}"
    assert re.search(rf"{re.escape(str(bad))}:{broken_line}:\d+", err), err
    warn = tmp_path / "warn.toml"
    warn.write_text('[[rule]]\nname = "subject-at-connect"\nkind = "scan"\nhook = "connect"\nwhen = \'subject contains "x"\'\n'
                    '[rule.actions]\ntarpit_ms = 10\n')
    rc, out, err = cli(server, "rules", "check", str(warn))
    assert rc == 0, f"a warning is not an error\n{out}\n{err}"
    assert "subject-at-connect" in out + err, f"no warning printed\n{out}\n{err}"
    rc, out, err = cli(server, "rules", "check", str(tmp_path / "missing.toml"))
    assert rc != 0, out
    spaced = tmp_path / "spaced.toml"  # a folder the store would refuse does not load
    spaced.write_text(RULE_ALPHA.replace('folder = "Alpha"', 'folder = "Alpha Beta"'))
    rc, out, err = cli(server, "rules", "check", str(spaced))
    assert rc == 2 and "actions.folder" in err, f"rules check of a bad folder exited {rc}\n{out}\n{err}"


def test_rules_test_and_apply_on_stored_messages(make_server, tmp_path):
    server, rules_file = rules_server(make_server, tmp_path, RULE_ALPHA)
    omega = [send_ok(server, f"omega-{i} " + uuid.uuid4().hex) for i in range(3)]
    others = [send_ok(server, f"other-{i} " + uuid.uuid4().hex) for i in range(2)]
    assert all(r["folder"] == "" for r in omega + others)
    rules_file.write_text(RULE_ALPHA + "\n" + RULE_ALPHA.replace("alpha", "omega").replace("Alpha", "Omega"))

    rc, out, err = cli(server, "rules", "test", "omega")
    assert rc == 0, f"{out}\n{err}"
    assert "3 of 5" in out, out
    for r in omega:
        assert str(r["id"]) in out, f"message {r['id']} not listed\n{out}"
    rc, out, err = cli(server, "rules", "test", "omega", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["matched"] == 3 and doc["examined"] == 5, doc
    assert sorted(m["id"] for m in doc["matches"]) == sorted(r["id"] for r in omega)
    # a dry run changed nothing
    assert all(server.message_by_queue_id(r["queue_id"])["folder"] == "" for r in omega)

    rc, out, err = cli(server, "rules", "apply", "omega", "--yes")
    assert rc == 0, f"{out}\n{err}"
    assert re.search(r"\b3 moved\b", out), out
    for r in omega:
        now = server.message_by_queue_id(r["queue_id"])
        assert now["folder"] == ".Omega", now
        assert "omega" in json.loads(now["tags"]), now
        path = server.data_dir / now["maildir_path"]
        assert path.is_file() and path.parent.parent.name == ".Omega", path
    for r in others:
        assert server.message_by_queue_id(r["queue_id"])["folder"] == ""
    rc, out, err = cli(server, "rules", "test", "omega")
    assert rc == 0 and "3 of 5" in out, out  # still matching, now in .Omega
    rc, out, err = cli(server, "rules", "apply", "omega", "--yes")
    assert rc == 0 and re.search(r"\b0 moved\b", out), out
    # folder = "Inbox" is the inbox (INBOX in any case, as in IMAP), not a folder ".Inbox".
    rules_file.write_text(RULE_ALPHA + "\n" + RULE_ALPHA.replace("alpha", "omega").replace("Alpha", "Inbox"))
    rc, out, err = cli(server, "rules", "apply", "omega", "--yes")
    assert rc == 0 and re.search(r"\b3 moved to the inbox\b", out), f"{out}\n{err}"
    for r in omega:
        now = server.message_by_queue_id(r["queue_id"])
        assert now["folder"] == "" and (server.data_dir / now["maildir_path"]).is_file(), now
    assert not (server.data_dir / "maildir" / ".Inbox").exists()
