"""`serve` publishes its relay caps in the database; a CLI `relaybait relay ID` run without
--config (the built-in defaults: daily 20, per sender 5, 5 recipients, test mode off) books
against the stricter of those and the server's (relay/published_limits.hpp)."""
from __future__ import annotations

import time
import uuid

from relay_harness import dns_server, relay_env  # noqa: F401 (fixtures)
from relay_harness import SPAMMER_DOMAIN, cli, queue_rows_of, send, spam_message, stored, wait_relay_event

USER = f"user@{SPAMMER_DOMAIN}"
SETTLE_S = 2.0


def test_a_cli_without_config_books_against_the_servers_caps_and_test_mode(relay_env):
    ops = relay_env.second_provider("ops")
    # Test mode only on the command line: the CLI's configuration cannot know it.
    server = relay_env.server(relay={"daily": 2, "per_sender_daily": 1, "max_recipients": 1,
                                     "test_server": f"127.0.0.1:{ops.port}", "test_recipient": "operator@ops.test"},
                              extra_args=["--test-mode"])
    published = server.query("SELECT * FROM relay_published_limits")
    assert len(published) == 1, published
    p = published[0]
    assert (p["enabled"], p["daily"], p["per_sender_daily"], p["max_recipients"], p["test_mode"]) == (1, 2, 1, 1, 1), p
    assert p["pid"] == server.proc.pid, p

    # Two recipients: the server allows one (the defaults five).
    two = stored(server, send(server, spam_message(uuid.uuid4().hex), [USER, f"other@{SPAMMER_DOMAIN}"],
                              sender="a@spam-sender.test"))
    rc, out, _ = cli(server, "relay", str(two["id"]), "--yes", config=False)
    assert rc != 0 and "recipients cap" in out, out

    one = stored(server, send(server, spam_message(uuid.uuid4().hex), USER, sender="b@spam-sender.test"))
    rc, out, _ = cli(server, "relay", str(one["id"]), "--yes", config=False)
    assert rc == 0, out
    rows = queue_rows_of(server, one)
    assert len(rows) == 1 and rows[0]["test_mode"] == 1, rows
    wait_relay_event(server, one, "relay.delivered")
    got = ops.wait_deliveries(1)
    assert got[0].rcpt_tos == ["operator@ops.test"], got[0].meta
    time.sleep(SETTLE_S)
    assert relay_env.provider.count() == 0, "a manual relay left test mode"

    # per_sender 1 (the defaults five).
    again = stored(server, send(server, spam_message(uuid.uuid4().hex), USER, sender="b@spam-sender.test"))
    rc, out, _ = cli(server, "relay", str(again["id"]), "--yes", config=False)
    assert rc != 0 and "per_sender cap" in out, out

    rc, out, _ = cli(server, "relay", "status", config=False)
    assert rc == 0, out
    # The CLI's built-in per-recipient/per-domain/per-client caps are stricter than this
    # server's (the harness sets them to 1000): both sources are named.
    assert "today:     1 of 2 " in out and "caps:      daily 2, per sender 1," in out, out
    assert "caps from: the stricter of this configuration's and the server's (sensor " in out, out
    assert f"pid {server.proc.pid}, published at " in out, out
