#!/usr/bin/python3
"""Fake receiving MTA for relay tests (aiosmtpd). Prints the port then READY.

Behaviour by recipient local part: temp*  -> 451 on the first RCPT for that address, then 250;
perm* -> 550; stall* -> the message is taken (counted) and its final dot never answered.
Every accepted message is written to OUTDIR/<n>.eml (the exact bytes received,
dot-unstuffed) with OUTDIR/<n>.json (envelope, TLS, mail options).
"""
import argparse, asyncio, json, os, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--outdir", required=True)
p.add_argument("--cert")
p.add_argument("--key")
args = p.parse_args()

seen = {}
count = [0]

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("perm"):
            return "550 5.1.1 <%s>: Recipient address rejected" % address
        if local.startswith("temp"):
            seen[address] = seen.get(address, 0) + 1
            if seen[address] == 1:
                return "451 4.7.1 <%s>: try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        if any(r.split("@")[0].lower().startswith("stall") for r in envelope.rcpt_tos):
            stalled = os.path.join(args.outdir, "stalled")
            with open(stalled, "a") as f:
                f.write("x")
            await asyncio.sleep(3600)
        count[0] += 1
        base = os.path.join(args.outdir, str(count[0]))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                "mail_options": envelope.mail_options, "tls": session.ssl is not None}
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 Ok: queued as FAKE%d" % count[0]

tls = None
if args.cert:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)

class Ctl(Controller):
    def factory(self):
        return SMTP(self.handler, tls_context=tls, require_starttls=False, decode_data=False,
                    enable_SMTPUTF8=True, hostname="fake.test")

ctl = Ctl(Handler(), hostname="127.0.0.1", port=args.port)
ctl.start()
print("READY", flush=True)
try:
    sys.stdin.read()  # until the test closes our stdin
finally:
    ctl.stop()
