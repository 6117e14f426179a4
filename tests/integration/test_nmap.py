"""nmap against relaybait: service detection and the smtp-commands / smtp-open-relay scripts must
say what they say about the real Postfix 3.7 (tests/transcripts/postfix-3.7/nmap-sV-scripts-2525.txt):

    2525/tcp open  smtp    Postfix smtpd
    |_smtp-commands: mx1.example.net, PIPELINING, SIZE 10240000, VRFY, ETRN, STARTTLS, AUTH PLAIN ...
    |_smtp-open-relay: Server is an open relay (16/16 tests)
"""
from __future__ import annotations

import re
import subprocess

from relaybait_testlib import require_tool, source_dir

REFERENCE = source_dir() / "tests" / "transcripts" / "postfix-3.7" / "nmap-sV-scripts-2525.txt"


def reference_line(prefix: str) -> str:
    for line in REFERENCE.read_text().splitlines():
        if line.startswith(prefix):
            return line
    raise AssertionError(f"{REFERENCE}: no line starting with {prefix!r}")


def test_nmap_names_postfix_and_finds_open_relay(server):
    nmap = require_tool("nmap")
    port = server.ports["smtp"]
    proc = subprocess.run([nmap, "-Pn", "-n", "-sV", "--script", "smtp-commands,smtp-open-relay",
                           "-p", str(port), "127.0.0.1"],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr

    m = re.search(rf"^{port}/tcp\s+open\s+smtp\s+(.*)$", out, re.M)
    assert m, out
    assert m.group(1).strip() == "Postfix smtpd", out

    # The same EHLO keywords, in the same order, as nmap listed for the real Postfix.
    want_commands = reference_line("|_smtp-commands:")
    got_commands = re.search(r"^\|_smtp-commands:.*$", out, re.M)
    assert got_commands, out
    assert got_commands.group(0) == want_commands, out

    assert "|_smtp-open-relay: Server is an open relay (16/16 tests)" in out, out
    assert "Service Info: Host:  mx1.example.net" in out, out
    assert server.alive(), server.log_tail()
