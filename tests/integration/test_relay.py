"""The relay end to end: `relaybait serve` with the default rules finds probes, relays them
through the caps to the MX the test DNS (dnsmasq) names, where the fake provider (aiosmtpd)
receives them; everything else is stored and never leaves.

Harness: relay_harness.py (DNS, provider, an MX that answers 451, the relay config).
"""
from __future__ import annotations

import base64
import json
import smtplib
import threading
import time
import sqlite3
import uuid

import pytest

from relay_harness import dns_server, relay_env  # noqa: F401 (fixtures)
from relay_harness import (FLOOD_DOMAINS, OTHER_DOMAIN, SELF_IP, SPAMMER_DOMAIN, TEMPFIRST_DOMAIN, assert_refused,
                           attempts_of, cli, headers_and_body, probe_message, queue_rows, queue_rows_of, relay_events,
                           rule_events, send, spam_message, stored, utc_today, wait_relay_event)
from relaybait_testlib import as_list, make_message, queue_id_from, wait_for

USER = f"user@{SPAMMER_DOMAIN}"
SETTLE_S = 2.0  # 10 poll intervals of 200 ms: long enough for the relay to have acted


def _relay_copies(server) -> list[tuple[str, bytes]]:
    """(name, bytes) of the relayed copies in .Probes (the ones with X-Relaybait-Relay-* headers)."""
    out = []
    for d in ("new", "cur"):
        folder = server.data_dir / "maildir" / ".Probes" / d
        if folder.exists():
            for p in folder.iterdir():
                data = p.read_bytes()
                if b"X-Relaybait-Relay-Result:" in data.split(b"\r\n\r\n", 1)[0]:
                    out.append((p.name, data))
    return out


def _relay_status(server) -> dict:
    rc, out, proc = cli(server, "relay", "status", "--json")
    assert rc == 0, out
    return json.loads(proc.stdout)


def _logs_files(server):
    d = server.data_dir / "maildir" / ".Logs" / "cur"
    return sorted(d.iterdir()) if d.exists() else []


# ------------------------------------------------------------------------------------------------
# the harness itself

def test_harness_dns_and_provider(relay_env):
    dns = relay_env.dns
    assert dns.query_mx(SPAMMER_DOMAIN) == [(10, f"mx.{SPAMMER_DOMAIN}")]
    assert dns.query_a(f"mx.{SPAMMER_DOMAIN}") == ["127.0.0.1"]
    assert dns.query_mx(TEMPFIRST_DOMAIN) == [(10, f"mx1.{TEMPFIRST_DOMAIN}"), (20, f"mx2.{TEMPFIRST_DOMAIN}")]
    msg = make_message("harness " + uuid.uuid4().hex, body="caf\u00e9 \u2713\r\n".encode())
    with smtplib.SMTP("127.0.0.1", relay_env.provider.port, timeout=10) as s:
        s.sendmail("a@example.org", ["x@other.test"], msg, mail_options=["BODY=8BITMIME"])
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("a@example.org", ["temp-x@other.test"], msg)  # 451 the first time
        s.sendmail("a@example.org", ["temp-x@other.test"], msg)
    got = relay_env.provider.wait_deliveries(2)
    assert got[0].data == msg and got[0].rcpt_tos == ["x@other.test"]
    with smtplib.SMTP("127.0.0.2", relay_env.provider.port, timeout=10) as s:
        s.ehlo()
        s.mail("a@example.org")
        assert s.rcpt("x@tempfirst.test")[0] == 451


# ------------------------------------------------------------------------------------------------
# a probe goes out, byte for byte; spam never does

def test_probe_is_relayed_byte_identical(relay_env):
    server = relay_env.server()
    token = uuid.uuid4().hex
    body = ("Hello relay \u00e9\u00e8\u00e0 \u2603 \u65e5\u672c\u8a9e " + token + "\r\n"
            "second line with 8-bit bytes: \u00fc\u00f6\u00e4\r\n").encode("utf-8")
    msg = probe_message(token, body=body, extra_headers=b"X-Mailer: ProbeMailer 1.0\r\n")
    qid = send(server, msg, USER, eightbit=True)
    row = stored(server, qid)

    # classified by the default rules, stored in .Probes
    assert row["folder"] == ".Probes", row
    assert row["rule"] == "probe-ip-in-subject" and row["kind"] == "probe", row
    assert "probe" in json.loads(row["tags"]), row
    assert server.message_file(row).parent.parent.name == ".Probes"
    # events.jsonl is written by a background thread (a few ms behind): wait for the event.
    ev = wait_for(lambda: [e for e in rule_events(server, row) if e.get("hook") == "data"], 10,
                  what="the data-hook rule.match event")
    assert ev and ev[0]["rule"] == "probe-ip-in-subject" and ev[0]["kind"] == "probe", rule_events(server)

    queued = wait_relay_event(server, row, "relay.queued")
    delivered = wait_relay_event(server, row, "relay.delivered")
    assert queued.get("recipients") == [USER] and len(queued.get("queue_ids", [])) == 1, queued
    kinds = [e["eventid"] for e in relay_events(server, row)]
    assert kinds.index("relay.queued") < kinds.index("relay.delivered"), kinds
    assert delivered.get("recipient") == USER, delivered
    assert delivered.get("mx_host", f"mx.{SPAMMER_DOMAIN}").rstrip(".") == f"mx.{SPAMMER_DOMAIN}", delivered

    got = relay_env.provider.wait_deliveries(1)
    assert len(got) == 1, got
    d = got[0]
    assert d.rcpt_tos == [USER], d.meta
    assert d.mail_from == "spammer@spammer-mail.test", d.meta
    assert "BODY=8BITMIME" in [o.upper() for o in d.meta.get("mail_options", [])], d.meta
    sent_headers, sent_body = headers_and_body(msg)
    got_headers, got_body = headers_and_body(d.data)
    assert got_body == sent_body, f"body changed in transit:\nsent {sent_body!r}\ngot  {got_body!r}"
    names = [n.lower() for n, _ in got_headers]
    assert not [n for n in names if n.startswith("x-relaybait")], f"trace headers leaked: {got_headers}"
    assert "received" not in names, f"relaybait's Received header leaked: {got_headers}"
    for h in sent_headers:
        assert h in got_headers, f"client header {h} missing from the relayed copy {got_headers}"
    assert d.data == msg, "the relayed message is not the message as received"

    # a copy with the result in .Probes, the day's summary in .Logs
    copies = wait_for(lambda: [c for c in _relay_copies(server) if token.encode() in c[1]], 10,
                      what="the relayed copy with X-Relaybait-Relay-* headers in maildir/.Probes")
    head = copies[0][1].split(b"\r\n\r\n", 1)[0]
    assert b"X-Relaybait-Relay-Result: delivered" in head, head
    assert copies[0][1].endswith(msg), "the .Probes copy is not the result headers + the message as relayed"

    def one_summary():
        files = _logs_files(server)
        try:
            return len(files) == 1 and utc_today().encode() in files[0].read_bytes() and files
        except FileNotFoundError:  # replaced right now
            return None
    try:
        wait_for(one_summary, 10, what=f"one summary for {utc_today()} in maildir/.Logs/cur")
    except AssertionError as e:
        raise AssertionError(f"{e}\n.Logs/cur: {[(p.name, p.read_bytes()[:1500]) for p in _logs_files(server)]}")

    rc, out, _ = cli(server, "relays", "list")
    assert rc == 0, out
    assert USER in out and "delivered" in out, out
    rc, out, proc = cli(server, "relays", "list", "--json")
    assert rc == 0, out
    items = as_list(json.loads(proc.stdout), "relays", "queue")
    mine = [i for i in items if i.get("recipient") == USER]
    assert mine and mine[0].get("state") == "delivered", items


def test_daily_log_is_a_valid_message(relay_env):
    """The .Logs summary is read with an IMAP client: it must be a well-formed message."""
    import email
    import email.policy
    import email.utils
    server = relay_env.server(relay={"max_size_bytes": 4096})
    # A refusal first (refusals alone do not rewrite the summary), then a relay that does.
    big = stored(server, send(server, probe_message(uuid.uuid4().hex, body=(b"y" * 76 + b"\r\n") * 100),
                              f"other@{OTHER_DOMAIN}"))
    assert_refused(server, big, "size")
    first = stored(server, send(server, probe_message(uuid.uuid4().hex), USER))
    wait_relay_event(server, first, "relay.delivered")

    def summary():
        files = _logs_files(server)
        try:
            data = files[0].read_bytes() if len(files) == 1 else b""
        except FileNotFoundError:
            return None
        return b"size" in data and USER.encode() in data and b"delivered" in data and data
    try:
        data = wait_for(summary, 10, what="the summary naming the delivery and the size refusal")
    except AssertionError as e:
        raise AssertionError(f"{e}\n.Logs/cur: {[(p.name, p.read_bytes()[:1500]) for p in _logs_files(server)]}")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert utc_today() in msg["Subject"], msg["Subject"]
    date = msg.get("Date", "")
    try:
        parsed = email.utils.parsedate_to_datetime(str(date))
    except (TypeError, ValueError):
        parsed = None
    assert parsed is not None, f"the summary's Date header is not an RFC 5322 date: {date!r}"
    assert email.utils.getaddresses([str(msg["To"])])[0][1].count("@") == 1, \
        f"the summary's To header is not an address: {msg['To']!r}"


def test_spam_is_stored_and_never_relayed(relay_env):
    server = relay_env.server()
    token = uuid.uuid4().hex
    qid = send(server, spam_message(token), USER, sender="bulk@spam-sender.test")
    row = stored(server, qid)
    assert row["folder"] == "", row
    assert not row["rule"], row
    assert server.message_file(row).is_file()
    time.sleep(SETTLE_S)
    assert relay_events(server, row) == [], relay_events(server, row)
    assert queue_rows(server) == []
    assert relay_env.provider.count() == 0, relay_env.provider.deliveries()


@pytest.mark.parametrize("shape", ["base64-subject", "ip-in-body-tail", "credentials-echoed", "ip-in-header"])
def test_encoded_probes_are_relayed(relay_env, shape):
    server = relay_env.server()
    token = uuid.uuid4().hex
    login = None
    if shape == "base64-subject":
        subject = "Test " + base64.b64encode(f"relay {SELF_IP} ok".encode()).decode() + " " + token
        msg = probe_message(token, subject=subject)
        rule = "probe-ip-in-subject"
    elif shape == "ip-in-body-tail":
        body = ("Hello,\r\n" + "filler line\r\n" * 40 + f"sent via {SELF_IP}:25\r\n-- \r\n{token}\r\n").encode()
        msg = probe_message(token, subject=f"hello {token}", body=body)
        rule = "probe-ip-in-body-tail"
    elif shape == "credentials-echoed":
        login = ("info@victim-corp.test", "Summer2024!")
        body = f"relay ok\r\nlogin info@victim-corp.test / Summer2024!\r\n{token}\r\n".encode()
        msg = probe_message(token, subject=f"works {token}", body=body)
        rule = "probe-credentials-echoed"
    else:
        msg = probe_message(token, subject=f"status {token}", extra_headers=f"X-Relay-Test: [{SELF_IP}]\r\n".encode())
        rule = "probe-ip-in-header"
    qid = send(server, msg, USER, login=login)
    row = stored(server, qid)
    assert row["rule"] == rule and row["folder"] == ".Probes", row
    wait_relay_event(server, row, "relay.delivered")
    got = relay_env.provider.wait_deliveries(1)
    assert len(got) == 1 and got[0].data == msg


# ------------------------------------------------------------------------------------------------
# the daily cap under a flood

def test_flood_5000_probes_exactly_20_relayed(relay_env):
    server = relay_env.server(relay={"daily": 20, "per_recipient_daily": 100000, "per_sender_daily": 100000,
                                     "per_client_ip_daily": 100000, "per_domain_daily": 100000},
                              limits={"sessions_per_ip": 1000})
    total, clients, per_connection = 5000, 50, 5
    acked: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(n: int):
        mine = range(n, total, clients)
        batch: list[int] = []
        for i in mine:
            batch.append(i)
            if len(batch) == per_connection or i == mine[-1]:
                try:
                    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=60) as s:
                        s.ehlo(f"flood{n}.example")
                        for j in batch:
                            rcpt = f"u{j % 97}@{FLOOD_DOMAINS[j % len(FLOOD_DOMAINS)]}"
                            msg = probe_message(f"flood-{j}", body=f"flood message number {j}\r\n".encode(), to=rcpt)
                            s.mail(f"s{j % 13}@spammer-mail.test")
                            s.rcpt(rcpt)
                            code, resp = s.data(msg)
                            with lock:
                                if code == 250:
                                    acked.append(queue_id_from(resp))
                                else:
                                    failures.append(f"{j}: {code} {resp!r}")
                except (OSError, smtplib.SMTPException) as e:
                    with lock:
                        failures.append(f"{batch}: {e!r}")
                batch = []

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    send_s = time.monotonic() - started
    assert not failures, f"{len(failures)} failures, first: {failures[:5]}"
    assert len(acked) == total

    stored_rows = server.query("SELECT COUNT(*) AS n FROM messages WHERE listener != 'relay' "
                               "AND header_subject LIKE 'Relay test %'")[0]["n"]
    assert stored_rows == total, f"{stored_rows} of {total} acknowledged messages stored"

    # every message gets its decision; the queue settles with exactly 20 delivered
    def decided():
        n = len(relay_events(server, None, ("relay.queued", "relay.refused")))
        return n >= total and n
    wait_for(decided, 120, 0.5, what=f"{total} relay decisions (relay.queued/relay.refused)")
    wait_for(lambda: all(r["state"] in ("delivered", "failed") for r in queue_rows(server)) and queue_rows(server),
             60, 0.2, what="the relay queue to settle")
    time.sleep(SETTLE_S)
    settled_s = time.monotonic() - started
    print(f"flood: {total} messages sent in {send_s:.1f}s, queue settled after {settled_s:.1f}s")

    rows = queue_rows(server)
    assert len(rows) == 20, f"relay_queue has {len(rows)} rows"
    assert all(r["state"] == "delivered" for r in rows), [(r["id"], r["state"], r["last_result"]) for r in rows]
    assert relay_env.provider.count() == 20, relay_env.provider.count()
    events = relay_events(server, None, ("relay.queued", "relay.refused"))
    queued = [e for e in events if e["eventid"] == "relay.queued"]
    refused = [e for e in events if e["eventid"] == "relay.refused"]
    assert len(queued) == 20 and len(refused) == total - 20, (len(queued), len(refused))
    caps = {e.get("cap") for e in refused}
    assert caps == {"daily"}, f"refusals name {caps}, expected only the daily cap"
    rc, out, proc = cli(server, "relays", "list", "--json")
    assert rc == 0, out
    assert len(as_list(json.loads(proc.stdout), "relays", "queue")) == 20


def test_restart_keeps_the_daily_count(relay_env):
    server = relay_env.server(relay={"daily": 3})
    rows = []
    for i in range(3):
        token = uuid.uuid4().hex
        rows.append(stored(server, send(server, probe_message(token), f"user{i}@{SPAMMER_DOMAIN}")))
    for row in rows:
        wait_relay_event(server, row, "relay.delivered")
    relay_env.provider.wait_deliveries(3)
    server.restart()
    later = []
    for i in range(2):
        token = uuid.uuid4().hex
        later.append(stored(server, send(server, probe_message(token), f"after{i}@{SPAMMER_DOMAIN}")))
    for row in later:
        assert_refused(server, row, "daily")
    time.sleep(SETTLE_S)
    assert relay_env.provider.count() == 3, relay_env.provider.deliveries()


def test_probe_never_checked_before_a_crash_is_relayed_after_restart(relay_env):
    """A probe acknowledged whose relay request died with the process (it is handed to the relay
    thread in memory) has no relay decision: the next start submits it again."""
    server = relay_env.server()
    token = uuid.uuid4().hex
    row = stored(server, send(server, probe_message(token), USER))
    assert row["relay_requested"] == 1, row
    wait_relay_event(server, row, "relay.delivered")
    relay_env.provider.wait_deliveries(1)
    server.stop()
    # The state a crash between the 250 and the safety check leaves: the message, no decision.
    db = sqlite3.connect(str(server.data_dir / "relaybait.db"))
    with db:
        for table in ("relay_decisions", "relay_queue", "relay_digests", "relay_counters", "relay_attempts"):
            db.execute(f"DELETE FROM {table}")
    db.close()
    server.start()
    deliveries = relay_env.provider.wait_deliveries(2, what="the probe submitted again at start")
    assert token.encode() in deliveries[-1].data


WATCHES_RULE = """
[[rule]]
name = "watches"
kind = "spam"
when = 'subject contains "Cheap watches"'
[rule.actions]
tags = ["watches"]
"""


def test_a_relay_rule_disabled_before_the_restart_resubmits_nothing(relay_env, tmp_path):
    """A message whose relay request never reached the safety check is submitted again at the
    next start only while the rule that asked for it is still enabled."""
    rules = tmp_path / "rules.toml"
    relaying = WATCHES_RULE.replace('tags = ["watches"]', 'tags = ["watches"]\nrelay = true')
    rules.write_text(relaying)
    server = relay_env.server(rules_file=rules)
    row = stored(server, send(server, spam_message(uuid.uuid4().hex), USER))
    assert row["relay_requested"] == 1, row
    wait_relay_event(server, row, "relay.delivered")
    relay_env.provider.wait_deliveries(1)
    server.stop()
    db = sqlite3.connect(str(server.data_dir / "relaybait.db"))
    with db:
        for table in ("relay_decisions", "relay_queue", "relay_digests", "relay_counters", "relay_attempts"):
            db.execute(f"DELETE FROM {table}")
    db.close()
    rules.write_text(relaying.replace('kind = "spam"', 'kind = "spam"\nenabled = false'))
    server.start()
    time.sleep(SETTLE_S)
    assert relay_env.provider.count() == 1, relay_env.provider.deliveries()
    assert not queue_rows(server), queue_rows(server)


def test_a_later_relay_rule_never_relays_mail_already_stored(relay_env, tmp_path):
    """The start-up recovery resubmits only messages whose rule asked for a relay when they were
    received. A rule changed afterwards to relay, and `rules apply` re-filing stored mail with
    it, relay nothing: not at the command, not at the next start."""
    rules = tmp_path / "rules.toml"
    rules.write_text(WATCHES_RULE)
    server = relay_env.server(rules_file=rules)
    token = uuid.uuid4().hex
    row = stored(server, send(server, spam_message(token), USER))
    assert row["rule"] == "watches" and row["kind"] == "spam" and row["relay_requested"] == 0, row
    server.stop()
    rules.write_text(WATCHES_RULE.replace('tags = ["watches"]', 'tags = ["watches"]\nrelay = true'))
    rc, out, _ = cli(server, "rules", "apply", "watches", "--yes")
    assert rc == 0, out
    assert "relay is not applied to stored messages" in out, out
    server.start()
    time.sleep(SETTLE_S)
    assert relay_env.provider.count() == 0, relay_env.provider.deliveries()
    assert not relay_events(server, row), relay_events(server, row)
    # The rule relays what arrives from now on.
    later = stored(server, send(server, spam_message(uuid.uuid4().hex), USER))
    wait_relay_event(server, later, "relay.delivered")
    assert relay_env.provider.count() == 1


# ------------------------------------------------------------------------------------------------
# test mode, retries, MX order

@pytest.mark.parametrize("how", ["flag", "config"])
def test_test_mode_sends_only_to_the_operator(relay_env, how):
    ops = relay_env.second_provider("ops")
    relay = {"test_server": f"127.0.0.1:{ops.port}", "test_recipient": "operator@ops.test"}
    if how == "config":
        relay["test_mode"] = True
    server = relay_env.server(relay=relay, extra_args=["--test-mode"] if how == "flag" else None)
    token = uuid.uuid4().hex
    msg = probe_message(token)
    row = stored(server, send(server, msg, USER))
    queued = wait_relay_event(server, row, "relay.queued")
    delivered = wait_relay_event(server, row, "relay.delivered")
    assert queued.get("test_mode") is True and delivered.get("test_mode") is True, (queued, delivered)
    got = ops.wait_deliveries(1)
    assert got[0].rcpt_tos == ["operator@ops.test"], got[0].meta
    assert token.encode() in got[0].data
    time.sleep(SETTLE_S)
    assert relay_env.provider.count() == 0, "test mode delivered to the spammer's MX"
    assert ops.count() == 1
    # The MX lookup of the real recipient was still made and recorded.
    qrows = queue_rows_of(server, row)
    assert len(qrows) == 1 and qrows[0]["recipient"] == USER, qrows
    attempts = attempts_of(server, qrows[0]["id"])
    assert attempts and attempts[-1]["test_mode"] == 1 and attempts[-1]["delivered_to"] == "operator@ops.test", attempts
    first_line = json.loads(attempts[0]["transcript"])[0]["text"]
    assert f"mx.{SPAMMER_DOMAIN}" in first_line, f"the MX lookup is not the first transcript line: {attempts[0]}"


def test_temporary_failure_is_retried(relay_env):
    server = relay_env.server()
    rcpt = f"temp-user@{SPAMMER_DOMAIN}"
    row = stored(server, send(server, probe_message(uuid.uuid4().hex), rcpt))
    started = time.monotonic()
    deferred = wait_relay_event(server, row, "relay.deferred")
    assert deferred.get("reply_code", 451) == 451, deferred
    wait_relay_event(server, row, "relay.delivered", timeout=15)
    took = time.monotonic() - started
    assert took < 10, f"delivered {took:.1f}s after the 451 (retry_base_seconds = 1)"
    got = relay_env.provider.wait_deliveries(1)
    assert got[0].rcpt_tos == [rcpt]
    qrows = queue_rows_of(server, row)
    assert qrows[0]["state"] == "delivered" and qrows[0]["attempts"] == 2, qrows
    assert [a["outcome"] for a in attempts_of(server, qrows[0]["id"])] == ["temporary", "delivered"]


def test_mx_on_a_private_address_is_not_relayed(relay_env):
    """SSRF: outside test mode the relay never talks SMTP to a non-public address an MX record
    points at (here every MX resolves to 127.0.0.x), unless allow_private_destinations."""
    server = relay_env.server(relay={"allow_private_destinations": False})
    rcpt = f"user@{SPAMMER_DOMAIN}"
    row = stored(server, send(server, probe_message(uuid.uuid4().hex), rcpt))
    failed = wait_relay_event(server, row, "relay.failed")
    assert "resolves only to non-public addresses" in failed.get("result", ""), failed
    assert "127.0.0.1 (loopback)" in failed["result"], failed
    qrows = queue_rows_of(server, row)
    assert len(qrows) == 1 and qrows[0]["state"] == "failed", qrows
    assert "non-public" in qrows[0]["last_result"], qrows
    assert attempts_of(server, qrows[0]["id"]) == [], "a connection was attempted"
    time.sleep(1)
    assert relay_env.provider.count() == 0, "the probe reached the MX on loopback"


def test_first_mx_4xx_falls_back_to_the_next(relay_env):
    server = relay_env.server()
    rcpt = f"user@{TEMPFIRST_DOMAIN}"
    row = stored(server, send(server, probe_message(uuid.uuid4().hex), rcpt))
    wait_relay_event(server, row, "relay.delivered")
    assert relay_env.tempfail.connections >= 1, "the preferred MX (451) was not tried first"
    got = relay_env.provider.wait_deliveries(1)
    assert got[0].rcpt_tos == [rcpt]
    attempts = attempts_of(server, queue_rows_of(server, row)[0]["id"])
    hosts = [(a["mx_host"].rstrip("."), a["outcome"]) for a in attempts]
    assert hosts == [(f"mx1.{TEMPFIRST_DOMAIN}", "temporary"), (f"mx2.{TEMPFIRST_DOMAIN}", "delivered")], attempts


# ------------------------------------------------------------------------------------------------
# caps

def test_cap_per_recipient(relay_env):
    server = relay_env.server(relay={"per_recipient_daily": 1})
    first = stored(server, send(server, probe_message(uuid.uuid4().hex), USER))
    wait_relay_event(server, first, "relay.queued")
    second = stored(server, send(server, probe_message(uuid.uuid4().hex), USER.upper()))
    assert_refused(server, second, "per_recipient")
    wait_relay_event(server, first, "relay.delivered")
    time.sleep(SETTLE_S)
    assert relay_env.provider.count() == 1


def test_cap_per_sender(relay_env):
    server = relay_env.server(relay={"per_sender_daily": 1})
    first = stored(server, send(server, probe_message(uuid.uuid4().hex), USER, sender="one@spammer-mail.test"))
    wait_relay_event(server, first, "relay.queued")
    second = stored(server, send(server, probe_message(uuid.uuid4().hex), f"other@{OTHER_DOMAIN}",
                                 sender="one@spammer-mail.test"))
    assert_refused(server, second, "per_sender")


def test_cap_per_client_ip_and_domain(relay_env):
    server = relay_env.server(relay={"per_client_ip_daily": 2, "per_domain_daily": 1})
    first = stored(server, send(server, probe_message(uuid.uuid4().hex), f"a@{SPAMMER_DOMAIN}"))
    wait_relay_event(server, first, "relay.queued")
    second = stored(server, send(server, probe_message(uuid.uuid4().hex), f"b@{SPAMMER_DOMAIN}"))
    assert_refused(server, second, "per_domain")
    third = stored(server, send(server, probe_message(uuid.uuid4().hex), f"c@{OTHER_DOMAIN}"))
    wait_relay_event(server, third, "relay.queued")
    fourth = stored(server, send(server, probe_message(uuid.uuid4().hex), f"d@{FLOOD_DOMAINS[0]}"))
    assert_refused(server, fourth, "per_client_ip")


def test_cap_identical_message(relay_env):
    server = relay_env.server()
    msg = probe_message(uuid.uuid4().hex)
    first = stored(server, send(server, msg, USER))
    wait_relay_event(server, first, "relay.queued")
    second = stored(server, send(server, msg, USER))
    assert_refused(server, second, "identical")
    wait_relay_event(server, first, "relay.delivered")
    time.sleep(SETTLE_S)
    assert relay_env.provider.count() == 1


def test_cap_size(relay_env):
    server = relay_env.server(relay={"max_size_bytes": 4096})
    token = uuid.uuid4().hex
    msg = probe_message(token, body=(b"x" * 76 + b"\r\n") * 100)
    row = stored(server, send(server, msg, USER))
    assert row["rule"] == "probe-ip-in-subject", row
    assert_refused(server, row, "size")


def test_cap_recipients(relay_env):
    server = relay_env.server(relay={"max_recipients": 2})
    row = stored(server, send(server, probe_message(uuid.uuid4().hex),
                              [f"a@{SPAMMER_DOMAIN}", f"b@{SPAMMER_DOMAIN}", f"c@{OTHER_DOMAIN}"]))
    assert_refused(server, row, "recipients")


def test_kill_switch(relay_env):
    server = relay_env.server(relay={"enabled": False})
    row = stored(server, send(server, probe_message(uuid.uuid4().hex), USER))
    assert row["folder"] == ".Probes", row  # still classified and stored
    assert_refused(server, row, "disabled")
    time.sleep(SETTLE_S)
    assert relay_env.provider.count() == 0


def test_pause_and_resume_from_the_cli(relay_env):
    server = relay_env.server()
    rc, out, _ = cli(server, "relay", "pause")
    assert rc == 0, out
    rc, out, _ = cli(server, "relay", "status")
    assert rc == 0 and "yes" in [l for l in out.lower().splitlines() if "paused" in l][0], out
    assert _relay_status(server)["paused"] is True
    paused_row = stored(server, send(server, probe_message(uuid.uuid4().hex), USER))
    assert_refused(server, paused_row, "paused")
    rc, out, _ = cli(server, "relay", "resume")
    assert rc == 0, out
    assert _relay_status(server)["paused"] is False
    row = stored(server, send(server, probe_message(uuid.uuid4().hex), f"after@{SPAMMER_DOMAIN}"))
    wait_relay_event(server, row, "relay.delivered")
    time.sleep(SETTLE_S)
    assert relay_env.provider.count() == 1
    assert relay_env.provider.deliveries()[0].rcpt_tos == [f"after@{SPAMMER_DOMAIN}"]
    status = _relay_status(server)
    assert status["today"] == 1 and status["daily"] == 1000 and status["queue"].get("delivered") == 1, status


def test_manual_relay_of_a_stored_message(relay_env):
    server = relay_env.server()
    token = uuid.uuid4().hex
    msg = spam_message(token)
    qid = send(server, msg, USER, sender="bulk@spam-sender.test")
    row = stored(server, qid)
    time.sleep(SETTLE_S)
    assert relay_env.provider.count() == 0
    rc, out, _ = cli(server, "relay", qid, "--yes")
    assert rc == 0, out
    wait_relay_event(server, row, "relay.delivered")
    got = relay_env.provider.wait_deliveries(1)
    assert got[0].data == msg and got[0].rcpt_tos == [USER]
    assert queue_rows_of(server, row)[0]["manual"] == 1
    rc, out, _ = cli(server, "relay", qid, "--yes")
    assert "identical" in out.lower(), f"second manual relay (exit {rc}) does not name the identical cap:\n{out}"
    assert rc != 0, f"a refused manual relay exited 0:\n{out}"
    time.sleep(SETTLE_S)
    assert relay_env.provider.count() == 1


def test_refused_list_and_stats(relay_env):
    server = relay_env.server(relay={"enabled": False})
    row = stored(server, send(server, probe_message(uuid.uuid4().hex), USER))
    assert_refused(server, row, "disabled")
    rc, out, _ = cli(server, "relays", "list", "--refused")
    assert rc == 0 and "disabled" in out, out
    rc, out, _ = cli(server, "stats")
    assert rc == 0, out
