"""Golden transcripts: replays all 3 x 72 dialogues captured from a real Postfix 3.7
(tests/transcripts/postfix-3.7/*.json), and the 3 x 52 differential dialogues recorded with
tests/integration/capture_dialogues.py (tests/transcripts/postfix-3.7-extra/*.json: nmap's
open-relay probes, address forms, AUTH/MAIL/BDAT edge cases), and requires byte-identical replies, except the queue id
in "queued as X" and the CRAM-MD5 challenge (see smtp_replay.py for the rules).

relaybait runs with --hostname mx1.example.net and AUTH policy accept-listed with the pair
testuser / S3cretPass! (what the captured Postfix had), so even the AUTH dialogues match.

Replay against any server instead (e.g. the real Postfix, to validate this harness):
    tests/integration/reference_postfix.sh start
    REPLAY_TARGET=127.0.0.1:2525,2465,2587 /usr/bin/python3 -m pytest -q -p no:cacheprovider \\
        tests/integration/test_transcripts.py
    tests/integration/reference_postfix.sh stop
Other knobs: REPLAY_JOBS (parallel dialogues, default 16), REPLAY_ONLY (comma-separated
dialogue names, or listener/name), REPLAY_TLS_CIPHER=0 (compare the TLS version only).
"""
from __future__ import annotations

import os

import pytest

import smtp_replay
from conftest import relaybait_config
from relaybait_testlib import Relaybait, source_dir, wait_for

TRANSCRIPTS = source_dir() / "tests" / "transcripts" / "postfix-3.7"
EXTRA_TRANSCRIPTS = source_dir() / "tests" / "transcripts" / "postfix-3.7-extra"


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    env = os.environ.get("REPLAY_TARGET")
    if env:
        host, _, ports = env.rpartition(":")
        smtp, smtps, submission = (int(p) for p in ports.split(","))
        yield host or "127.0.0.1", {"smtp": smtp, "smtps": smtps, "submission": submission}, None
        return
    srv = Relaybait(tmp_path_factory.mktemp("relaybait"),
                    relaybait_config(auth_policy="accept-listed", accept=(("testuser", "S3cretPass!"),)))
    srv.start()
    yield "127.0.0.1", srv.ports, srv
    srv.stop()


def replay_and_check(target, directory, expected_total: int, what: str):
    host, ports, server = target
    transcripts = smtp_replay.load_transcripts(directory)
    total = sum(len(d) for d in transcripts.values())
    assert total == expected_total, f"expected {expected_total} {what} dialogues, found {total}"
    only = {x.strip() for x in os.environ.get("REPLAY_ONLY", "").split(",") if x.strip()} or None
    results = smtp_replay.replay_all(host, ports, transcripts,
                                     jobs=int(os.environ.get("REPLAY_JOBS", "16")), only=only)
    matched = [r for r in results if r.ok]
    per_listener = {l: (sum(1 for r in results if r.listener == l and r.ok),
                        sum(1 for r in results if r.listener == l)) for l in smtp_replay.LISTENERS}
    summary = f"{what}: {len(matched)}/{len(results)} dialogues matched Postfix 3.7 (" + \
        ", ".join(f"{l} {a}/{b}" for l, (a, b) in per_listener.items()) + ")"
    print("\n" + summary)
    failures = [r.report() for r in results if not r.ok]

    report = summary + ("\n\n" + "\n".join(failures[:60]) if failures else "")
    if len(failures) > 60:
        report += f"\n... and {len(failures) - 60} more mismatching dialogues"
    if server is not None:
        assert server.alive(), report + "\n\nrelaybait died during the replay; log:\n" + server.log_tail()
        # Every message relaybait acknowledged during the replay is stored.
        for qid in smtp_replay.queue_ids(results):
            row = wait_for(lambda: server.message_by_queue_id(qid), 10, what=f"message {qid} in the DB")
            path = server.message_file(row)
            assert path.is_file(), f"message {qid}: {path} missing"

    if failures:
        pytest.fail(report, pytrace=False)


def test_all_dialogues_match_postfix(target):
    replay_and_check(target, TRANSCRIPTS, 216, "transcripts")


def test_extra_dialogues_match_postfix(target):
    """The differential set: what relaybait's author implemented from memory, and scanner probes."""
    replay_and_check(target, EXTRA_TRANSCRIPTS, 156, "extra transcripts")
