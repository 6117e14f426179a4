#!/usr/bin/env python3
"""Records what a real Postfix 3.7 answers to a set of dialogues, in the transcript format of
tests/transcripts/postfix-3.7 ({name: [[sent, reply], ...]}, latin-1 strings; markers as in
smtp_replay.py). The dialogues defined here are the "-extra" set: behaviour relaybait's engine
was written from memory for, and what scanners send (nmap smtp-open-relay, honeypot fingerprinting).

    tests/integration/reference_postfix.sh start
    /usr/bin/python3 tests/integration/capture_dialogues.py --runs 3 \\
        --out tests/transcripts/postfix-3.7-extra
    tests/integration/reference_postfix.sh stop

Each dialogue is a list of things to send; the tool wraps it per listener:
  smtp        ["", *steps, "<<eof-check>>"]
  smtps       ["<<tls-handshake>>", "", *steps, "<<eof-check>>"]
  submission  ["", EHLO, "STARTTLS", "<<tls-handshake>>", *steps, "<<eof-check>>"]
(submission enforces TLS, so the interesting part runs after STARTTLS there).

A reply is everything that arrives after a send until the server has sent at least one complete
final reply line and then stayed quiet for QUIET seconds ("<<timeout>>" when nothing came within
NOTHING_TIMEOUT). With --runs N every dialogue is captured N times and only dialogues whose
(normalised) replies were identical in every run are written; the others are reported.
"""
from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import smtp_replay  # noqa: E402
from smtp_replay import Conn, state_marker  # noqa: E402

FIRST_TIMEOUT = 5.0    # a reply that comes (covers Postfix's 1 s error sleep)
NOTHING_TIMEOUT = 2.0  # steps that expect nothing: how long to listen before "<<timeout>>"
QUIET = 0.4            # after a final line: how long more data may take to belong to this reply

E = "EHLO probe.example.org"
IP = "127.0.0.1"
HOST = "mx1.example.net"


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode("latin-1") if isinstance(s, str) else s).decode()


def cmd(*lines: str) -> list[str]:
    return [line + "\r\n" for line in lines]


def nmap_open_relay() -> list[str]:
    """The 16 MAIL/RCPT pairs of nmap 7.93 smtp-open-relay.nse, each after RSET."""
    dom, frm, to = "nmap.scanme.org", "antispam", "relaytest"
    tests = [
        ("", f"{to}@{dom}"),
        (f"{frm}@{dom}", f"{to}@{dom}"),
        (f"{frm}@{HOST}", f"{to}@{dom}"),
        (f"{frm}@[{IP}]", f"{to}@{dom}"),
        (f"{frm}@[{IP}]", f"{to}%{dom}@[{IP}]"),
        (f"{frm}@[{IP}]", f"{to}%{dom}@{HOST}"),
        (f"{frm}@[{IP}]", f'"{to}@{dom}"'),
        (f"{frm}@[{IP}]", f'"{to}%{dom}"'),
        (f"{frm}@[{IP}]", f"{to}@{dom}@[{IP}]"),
        (f"{frm}@[{IP}]", f'"{to}@{dom}"@[{IP}]'),
        (f"{frm}@[{IP}]", f"{to}@{dom}@{HOST}"),
        (f"{frm}@[{IP}]", f"@[{IP}]:{to}@{dom}"),
        (f"{frm}@[{IP}]", f"@{HOST}:{to}@{dom}"),
        (f"{frm}@[{IP}]", f"{dom}!{to}"),
        (f"{frm}@[{IP}]", f"{dom}!{to}@[{IP}]"),
        (f"{frm}@[{IP}]", f"{dom}!{to}@{HOST}"),
    ]
    steps = cmd(f"EHLO {dom}")
    for f, t in tests:
        steps += cmd("RSET", f"MAIL FROM:<{f}>", f"RCPT TO:<{t}>")
    return steps + cmd("QUIT")


LONG = "a" * 300

DIALOGUES: dict[str, list[str]] = {
    # --- relay address forms -------------------------------------------------------------
    "nmap_open_relay": nmap_open_relay(),
    "rcpt_route_and_hack_forms": cmd(
        E, "MAIL FROM:<alice@example.org>",
        "RCPT TO:<victim@example.com@mx1.example.net>",
        "RCPT TO:<victim@example.com@localhost>",
        "RCPT TO:<a@b@c@example.com>",
        "RCPT TO:<\"victim@example.com\">",
        "RCPT TO:<\"victim@example.com\"@mx1.example.net>",
        "RCPT TO:<victim%example.com@localhost>",
        "RCPT TO:<victim%example.com%mx1.example.net@mx1.example.net>",
        "RCPT TO:<example.com!victim>",
        "RCPT TO:<example.com!victim@localhost>",
        "RCPT TO:<a.example!b.example!victim>",
        "RCPT TO:<@a.example,@b.example:victim@example.com>",
        "QUIT"),
    "rcpt_local_forms": cmd(
        E, "MAIL FROM:<alice@example.org>",
        "RCPT TO:<nosuchuser>",
        "RCPT TO:<root>",
        "RCPT TO:<ROOT@MX1.EXAMPLE.NET>",
        "RCPT TO:<\"root\"@mx1.example.net>",
        "RCPT TO:<nosuchuser@localhost>",
        "RCPT TO:<nosuchuser@[127.0.0.1]>",
        "RCPT TO:<Postmaster>",
        "RCPT TO:<postmaster@mx1.example.net>",
        "QUIT"),
    "rcpt_local_hack_forms": cmd(
        E, "MAIL FROM:<alice@example.org>",
        "RCPT TO:<root%mx1.example.net@mx1.example.net>",
        "RCPT TO:<nosuchuser%mx1.example.net@mx1.example.net>",
        "RCPT TO:<mx1.example.net!root@mx1.example.net>",
        "RCPT TO:<mx1.example.net!nosuchuser@mx1.example.net>",
        "RCPT TO:<nosuchuser@mx1.example.net@mx1.example.net>",
        "QUIT"),
    "rcpt_null_and_odd": cmd(
        E, "MAIL FROM:<alice@example.org>",
        "RCPT TO:<>",
        "RCPT TO:victim@example.com",
        "RCPT TO: <victim@example.com>",
        "RCPT TO:<victim@example.com> FOO=bar",
        "RCPT TO:<victim@example.com> NOTIFY=NEVER,SUCCESS",
        "RCPT TO:<victim@example.com> ORCPT=bogus",
        "QUIT"),
    # --- AUTH ----------------------------------------------------------------------------
    "auth_invalid_base64": cmd(
        E, "AUTH PLAIN !!!!", "AUTH PLAIN dGVzdA", "AUTH LOGIN", "not base64!", "NOOP", "QUIT"),
    "auth_plain_missing_nul": cmd(
        E, "AUTH PLAIN " + b64("testuserS3cretPass!"), "AUTH PLAIN " + b64("testuser\0S3cretPass!"),
        "AUTH PLAIN", b64("\0testuser"), "NOOP", "QUIT"),
    "auth_plain_equals": cmd(E, "AUTH PLAIN =", "*", "AUTH LOGIN =", "*", "QUIT"),
    "auth_too_many_args": cmd(E, "AUTH PLAIN a b", "AUTH", "QUIT"),
    "auth_long_initial_response": cmd(E, "AUTH PLAIN " + "QUFB" * 800, "NOOP", "QUIT"),
    "auth_long_continuation": cmd(E, "AUTH PLAIN", "QUFB" * 800, "NOOP", "QUIT"),
    "auth_during_mail": cmd(
        E, "MAIL FROM:<alice@example.org>", "AUTH PLAIN " + b64("\0testuser\0S3cretPass!"), "RSET",
        "AUTH PLAIN " + b64("\0testuser\0S3cretPass!"), "MAIL FROM:<alice@example.org> AUTH=<>",
        "RCPT TO:<victim@example.com>", "QUIT"),
    "auth_login_empty_username": cmd(E, "AUTH LOGIN", "", "cGFzc3dvcmQ=", "NOOP", "QUIT"),
    "auth_login_valid": cmd(E, "AUTH LOGIN", b64("testuser"), b64("S3cretPass!"), "NOOP", "QUIT"),
    "auth_lowercase_mechanism": cmd(E, "auth plain " + b64("\0testuser\0wrong"), "QUIT"),
    "auth_cram_bad_response": cmd(E, "AUTH CRAM-MD5 " + b64("x"), "QUIT"),
    "auth_plain_authzid_valid": cmd(E, "AUTH PLAIN " + b64("testuser\0testuser\0S3cretPass!"), "QUIT"),
    # --- MAIL ----------------------------------------------------------------------------
    "mail_8bit_without_smtputf8": cmd(
        E, "MAIL FROM:<j\xc3\xb6rg@example.org>", "RSET", "MAIL FROM:<alice@b\xc3\xbccher.example>", "RSET",
        "MAIL FROM:<alice@example.org>", "RCPT TO:<\xc3\xbcser@example.com>", "RCPT TO:<bob@b\xc3\xbccher.example>",
        "RSET", "VRFY j\xc3\xb6rg@example.org", "QUIT"),
    "mail_smtputf8_variants": cmd(
        E, "MAIL FROM:<alice@example.org> SMTPUTF8", "RCPT TO:<\xc3\xbcser@b\xc3\xbccher.example>", "RSET",
        "MAIL FROM:<alice@example.org> smtputf8 BODY=8BITMIME", "RSET",
        "MAIL FROM:<alice@example.org> SMTPUTF8=yes", "QUIT"),
    "mail_nested": cmd(E, "MAIL FROM:<alice@example.org>", "MAIL FROM:<bob@example.org>",
                       "MAIL FROM:<>", "RSET", "MAIL FROM:<bob@example.org>", "QUIT"),
    "mail_ret_envid": cmd(
        E, "MAIL FROM:<alice@example.org> RET=FULL ENVID=abc123", "RSET",
        "MAIL FROM:<alice@example.org> RET=hdrs ENVID=a+2Bb", "RSET",
        "MAIL FROM:<alice@example.org> RET=BOGUS",
        "MAIL FROM:<alice@example.org> RET=FULL RET=HDRS",
        "MAIL FROM:<alice@example.org> ENVID=bad+zz",
        "MAIL FROM:<alice@example.org> ENVID=",
        "QUIT"),
    "mail_auth_param": cmd(
        E, "MAIL FROM:<alice@example.org> AUTH=<>", "RSET",
        "MAIL FROM:<alice@example.org> AUTH=alice@example.org", "RSET",
        "MAIL FROM:<alice@example.org> AUTH=bad+zz", "QUIT"),
    "mail_size_values": cmd(
        E, "MAIL FROM:<alice@example.org> SIZE=10240000", "RSET",
        "MAIL FROM:<alice@example.org> SIZE=10240001",
        "MAIL FROM:<alice@example.org> SIZE=99999999999999999999",
        "MAIL FROM:<alice@example.org> SIZE=9223372036854775807",
        "MAIL FROM:<alice@example.org> SIZE=-1",
        "MAIL FROM:<alice@example.org> SIZE=",
        "MAIL FROM:<alice@example.org> SIZE=abc",
        "MAIL FROM:<alice@example.org> SIZE=0", "QUIT"),
    "mail_malformed_params": cmd(
        E, "MAIL FROM:<alice@example.org> SIZE",
        "MAIL FROM:<alice@example.org> BODY=BINARYMIME",
        "MAIL FROM:<alice@example.org> BODY=foo",
        "MAIL FROM:<alice@example.org> body=8bitmime", "RSET",
        "MAIL FROM:<alice@example.org>  SIZE=100", "RSET",
        "MAIL FROM:<alice@example.org>junk", "QUIT"),
    "mail_address_forms": cmd(
        E, "MAIL FROM:alice@example.org", "RSET", "MAIL FROM: <alice@example.org>", "RSET",
        "MAIL FROM:<alice@example.org@example.net>", "RSET",
        "MAIL FROM:<@relay.example:alice@example.org>", "RSET",
        "MAIL FROM:<\"alice smith\"@example.org>", "RSET",
        "MAIL FROM:<alice>", "RSET",
        "MAIL FROM:<alice@[127.0.0.1]>", "RSET",
        "MAIL FROM:<alice@[999.0.0.1]>", "QUIT"),
    # --- BDAT / DATA ---------------------------------------------------------------------
    "bdat_after_error": cmd(E, "MAIL FROM:<alice@example.org>") + ["BDAT 5\r\nhello"] +
        ["BDAT 3 LAST\r\nabc"] + cmd("RCPT TO:<victim@example.com>") + ["BDAT 4 LAST\r\nabcd"] + cmd("QUIT"),
    "bdat_then_data": cmd(E, "MAIL FROM:<alice@example.org>", "RCPT TO:<victim@example.com>") +
        ["BDAT 5\r\nhello"] + cmd("DATA") + ["BDAT 2 LAST\r\nxy"] + cmd("QUIT"),
    "data_then_bdat": cmd(E, "MAIL FROM:<alice@example.org>", "RCPT TO:<victim@example.com>", "DATA") +
        ["Subject: t\r\n\r\nhi\r\n.\r\n"] + ["BDAT 5 LAST\r\nhello"] + cmd("QUIT"),
    "bdat_0_last": cmd(E, "MAIL FROM:<alice@example.org>", "RCPT TO:<victim@example.com>", "BDAT 0 LAST",
                       "MAIL FROM:<alice@example.org>", "RCPT TO:<victim@example.com>") +
        ["BDAT 7\r\nSubject"] + cmd("BDAT 0 LAST", "QUIT"),
    "bdat_huge_count": cmd(E, "MAIL FROM:<alice@example.org>", "RCPT TO:<victim@example.com>",
                           "BDAT 99999999999"),
    "bdat_huge_count_last": cmd(E, "MAIL FROM:<alice@example.org>", "RCPT TO:<victim@example.com>",
                                "BDAT 20000000 LAST"),
    "bdat_count_overflow": cmd(E, "MAIL FROM:<alice@example.org>", "RCPT TO:<victim@example.com>",
                               "BDAT 99999999999999999999999"),
    "bdat_last_lowercase": cmd(E, "MAIL FROM:<alice@example.org>", "RCPT TO:<victim@example.com>") +
        ["bdat 2 last\r\nhi"] + cmd("QUIT"),
    "bdat_extra_arg": cmd(E, "MAIL FROM:<alice@example.org>", "RCPT TO:<victim@example.com>",
                          "BDAT 2 LAST foo"),
    "data_with_arg": cmd(E, "MAIL FROM:<alice@example.org>", "RCPT TO:<victim@example.com>", "DATA foo",
                         "RSET", "DATA", "QUIT"),
    "rset_mid_transaction": cmd(E, "MAIL FROM:<alice@example.org>", "RCPT TO:<victim@example.com>", "RSET",
                                "DATA", "RCPT TO:<victim@example.com>", "RSET now", "QUIT"),
    # --- VRFY / EXPN / HELO / misc -------------------------------------------------------
    "vrfy_variants": cmd(
        E, "VRFY root", "VRFY <root@mx1.example.net>", "VRFY nosuchuser", "VRFY nosuchuser@mx1.example.net",
        "VRFY someone@gmail.com", "VRFY \"John Doe\"", "VRFY root SMTPUTF8", "QUIT"),
    "vrfy_odd": cmd(E, "VRFY John Doe", "VRFY <>", "VRFY postmaster", "VRFY <root", "QUIT"),
    "expn_variants": cmd(E, "EXPN", "EXPN postmaster", "EXPN root@mx1.example.net", "QUIT"),
    "helo_ip_literal": cmd("HELO [127.0.0.1]", "HELO 1.2.3.4", "EHLO [IPv6:::1]", "QUIT"),
    "helo_multiple_words": cmd("HELO a b c", "EHLO one two", "HELO under_score.example", "QUIT"),
    "helo_very_long": cmd("HELO " + "h" * 600 + ".example", "EHLO " + "e" * 1500, "QUIT"),
    "helo_quoted_and_brackets": cmd("HELO \"quoted name\"", "EHLO <probe.example.org>", "HELO x", "QUIT"),
    "noop_quit_with_args": cmd(E, "NOOP hello world", "NOOP", "QUIT now please"),
    "starttls_with_arg": cmd("STARTTLS now", "QUIT"),
    "etrn_variants": cmd(E, "ETRN", "ETRN #queue", "ETRN @example.com", "ETRN bad!domain", "ETRN a b",
                         "QUIT"),
    "legacy_commands": cmd(E, "TURN", "ATRN", "VERB", "SEND FROM:<a@example.org>", "SAML FROM:<a@example.org>",
                           "QUIT"),
    "legacy_commands_2": cmd(E, "DEBUG", "WIZ", "XEXCH50 1 2", "X-EXPS GSSAPI", "HELP MAIL", "QUIT"),
    "whitespace_variants": cmd(E, " NOOP", "NOOP ", "MAIL\tFROM:<alice@example.org>", "RSET",
                               "MAIL  FROM:<alice@example.org>", "QUIT"),
    "mixed_case_verbs": cmd("eHlO probe.example.org", "NoOp", "MaIl FrOm:<alice@example.org>",
                            "rCpT tO:<victim@example.com>", "QuIt"),
    "pipelined_without_ehlo": [
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<victim@example.com>\r\nNOOP\r\nRSET\r\n"] + cmd("QUIT"),
    "rcpt_before_mail_postmaster": cmd(E, "RCPT TO:<postmaster>", "DATA", "BDAT 1 LAST"),
}


def wrap(listener: str, steps: list[str]) -> list[str]:
    if listener == "smtps":
        return ["<<tls-handshake>>", ""] + steps + ["<<eof-check>>"]
    if listener == "submission":
        return ["", E + "\r\n", "STARTTLS\r\n", "<<tls-handshake>>"] + steps + ["<<eof-check>>"]
    return [""] + steps + ["<<eof-check>>"]


def read_reply(conn: Conn) -> str:
    """Everything until at least one complete final line has arrived and the server went quiet."""
    deadline = time.monotonic() + FIRST_TIMEOUT
    while True:
        data = bytes(conn.buf)
        if data.endswith(b"\n") and smtp_replay.count_final_lines(data) > 0:
            last = data[:-1].rsplit(b"\n", 1)[-1]
            if smtp_replay.FINAL_LINE.match(last.rstrip(b"\r")):
                r = conn.fill(QUIET)
                if r == "data":
                    continue
                return conn.take().decode("latin-1")
        left = deadline - time.monotonic()
        r = conn.fill(max(left, 0.001)) if left > 0 else "timeout"
        if r == "data":
            continue
        if conn.buf:
            return conn.take().decode("latin-1")
        return "<<timeout>>" if r == "timeout" else state_marker(r)


def capture(host: str, port: int, sends: list[str]) -> list[list[str]]:
    steps: list[list[str]] = []
    try:
        conn = Conn(host, port)
    except OSError as e:
        return [[s, f"<<connect failed: {e}>>"] for s in sends]
    try:
        for sent in sends:
            if sent == "":
                steps.append([sent, read_reply(conn)])
            elif sent == "<<tls-handshake>>":
                steps.append([sent, conn.starttls()])
            elif sent == "<<eof-check>>":
                if conn.buf:
                    steps.append([sent, "<<unexpected data: %r>>" % conn.take().decode("latin-1")])
                    continue
                r = conn.fill(1.0)
                steps.append([sent, "<<open>>" if r == "timeout" else
                              ("<<unexpected data: %r>>" % conn.take().decode("latin-1") if r == "data"
                               else "<<closed-by-server>>")])
            else:
                failed = conn.send(sent.encode("latin-1"))
                if failed:
                    steps.append([sent, failed])
                    continue
                deadline = time.monotonic() + NOTHING_TIMEOUT
                reply = read_reply(conn)
                if reply == "<<timeout>>" and time.monotonic() < deadline:
                    reply = "<<timeout>>"
                steps.append([sent, reply])
    finally:
        conn.close()
    return steps


def normalised(steps: list[list[str]]) -> list[tuple[str, str]]:
    return [(s, smtp_replay.normalise(r)) for s, r in steps]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ports", default="2525,2465,2587", help="smtp,smtps,submission")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "transcripts" / "postfix-3.7-extra"))
    ap.add_argument("--runs", type=int, default=3, help="capture every dialogue this many times; keep stable ones")
    ap.add_argument("--only", default="", help="comma-separated dialogue names")
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--print", action="store_true", help="print the captured dialogues instead of writing")
    args = ap.parse_args()
    ports = dict(zip(smtp_replay.LISTENERS, (int(p) for p in args.ports.split(","))))
    names = [n for n in DIALOGUES if not args.only or n in args.only.split(",")]
    out_dir = Path(args.out)
    unstable = []
    for listener in smtp_replay.LISTENERS:
        runs: dict[str, list[list[list[str]]]] = {n: [] for n in names}
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futs = {pool.submit(capture, args.host, ports[listener], wrap(listener, DIALOGUES[n])): n
                    for n in names for _ in range(args.runs)}
            for fut in concurrent.futures.as_completed(futs):
                runs[futs[fut]].append(fut.result())
        result = {}
        for n in names:
            first = runs[n][0]
            if any(normalised(r) != normalised(first) for r in runs[n][1:]):
                unstable.append(f"{listener}/{n}")
                continue
            result[n] = first
        if args.print:
            for n, steps in result.items():
                print(f"== {listener}/{n}")
                for s, r in steps:
                    print(f"  >> {s[:120]!r}\n  << {r[:400]!r}")
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / smtp_replay.TRANSCRIPT_FILES[listener]
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, ensure_ascii=True)
            f.write("\n")
        print(f"{path}: {len(result)} dialogues")
    if unstable:
        print("left out (replies differed between runs): " + ", ".join(unstable))
    return 0


if __name__ == "__main__":
    sys.exit(main())
