#!/usr/bin/python3
"""relaybait benchmark: relaybait vs aiosmtpd+Maildir vs Postfix smtp-sink, same machine, same run.

    /usr/bin/python3 bench/run.py [--quick] [--reps 3] [--messages 20000] [--no-build]
                                  [--binary build/release/relaybait] [--results bench/RESULTS.md]

What it does (see README "Benchmark" and bench/RESULTS.md):
  1. builds relaybait in release mode (`cmake --workflow --preset release`), unless --no-build;
  2. throughput: starts relaybait, aiosmtpd+Maildir (/work/shared/bench/aiosmtpd_maildir.py)
     and smtp-sink one after another on loopback and drives each with the same smtp-source load
     (-s 50, new connection per message; then -d, one connection many messages), repeated
     --reps times alternating server order; relaybait also at -s 200;
  3. STARTTLS throughput, relaybait vs aiosmtpd (with a tls_context), with the asyncio+ssl load
     client in this file (`tls-load`), used identically against both;
  4. latency of the final 250 after DATA (p50/p99) measured by a probe client while
     smtp-source -s 50 runs;
  5. relaybait idle RSS and RSS per idle session at 5,000 and 10,000 held sessions
     (/work/shared/bench/idle_conns.py); aiosmtpd and smtp-sink at 5,000 (smtp-sink stops at 256);
  6. one 50 MB message: relaybait's peak RSS (VmHWM) before/after;
  7. prints a table of medians and the relaybait/peer ratios, and writes them (with the date,
     machine and exact commands) to --results.
Every message is fsync'd before its 250 by relaybait (Maildir file + new/ + SQLite FULL) and
by aiosmtpd+Maildir (Python's mailbox fsyncs each file). Numbers are reported, never asserted.
"""
import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = "/work/shared/bench"
AIOSMTPD = os.path.join(SHARED, "aiosmtpd_maildir.py")
IDLE = os.path.join(SHARED, "idle_conns.py")
IDLE_SETTLE_SECONDS = 15  # after start, before "idle" RSS is read (see the idle phase)
QUIET_SECONDS = 60        # after a load, the longest wait for RSS to drop (relaybait releases 10-11 s after its last session)
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
PY = "/usr/bin/python3"

# Below the ephemeral port range (32768-60999): with ~10^5 client connections per run, a port
# inside it is sooner or later held by some client socket and the next server cannot bind.
PORT_RB = 22525      # relaybait smtp listener = 25 + offset
PORT_OFFSET = 22500
PORT_AIO = 22526
PORT_SINK = 22527
PORT_AIO_TLS = 22528

NOTES_MARKER = "<!-- hand-written notes below: kept when bench/run.py rewrites the tables above -->"
COMMANDS = []  # every external command run, for RESULTS.md


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run_logged(cmd, **kw):
    COMMANDS.append(" ".join(shlex.quote(c) for c in cmd))
    return subprocess.run(cmd, **kw)


def rss_kb(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def wait_port(port, timeout=30.0, banner=True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if banner:
                    s.settimeout(5)
                    if s.recv(512).startswith(b"220"):
                        return
                else:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not ready")


_runs = [0]


def fresh_dir(work, stem):
    """A new directory name per server start. Nothing is deleted until the whole run is over:
    on ext4 a file created soon after many deletions pays for skipping the recently freed
    inodes (find_inode_bit -> recently_deleted, up to 5 min after the delete), which cut
    relaybait's rate by 3x in a trial run where the previous run's data had just been removed."""
    _runs[0] += 1
    return os.path.join(work, "runs", f"{stem}.{_runs[0]}")


def count_files(d):
    try:
        return len(os.listdir(d))
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------------------------------------
# servers


class Server:
    name = "?"
    port = 0

    def __init__(self, work):
        self.work = work
        self.proc = None

    def start(self):
        raise NotImplementedError

    def stored(self):
        return None  # messages on disk, or None when the server keeps nothing

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid


RB_CONFIG = """\
hostname = "mail.example.com"
log_level = "warn"
bind = ["127.0.0.1"]
[listeners.smtps]
enabled = false
[listeners.submission]
enabled = false
[limits]
sessions_per_ip = 20000
sessions_total = 20000
messages_per_session = 100000
message_size_bytes = 67108864
"""


class Relaybait(Server):
    name = "relaybait"
    port = PORT_RB

    def __init__(self, work, binary):
        super().__init__(work)
        self.binary = binary
        self.data = os.path.join(work, "rb-data")
        self.config = os.path.join(work, "relaybait-bench.toml")

    def start(self):
        self.data = fresh_dir(self.work, "rb-data")
        with open(self.config, "w") as f:
            f.write(RB_CONFIG)
        cmd = [self.binary, "serve", "--config", self.config, "--data-dir", self.data,
               "--port-offset", str(PORT_OFFSET)]
        COMMANDS.append(" ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "rb.log"), "a"))
        wait_port(self.port)

    def stored(self):
        return count_files(os.path.join(self.data, "maildir", "new"))


class Aiosmtpd(Server):
    name = "aiosmtpd+Maildir"
    port = PORT_AIO

    def __init__(self, work, tls_cert=None):
        super().__init__(work)
        self.maildir = os.path.join(work, "aio-Maildir")
        self.tls_cert = tls_cert
        if tls_cert:
            self.port = PORT_AIO_TLS

    def start(self):
        self.maildir = fresh_dir(self.work, "aio-Maildir")
        if self.tls_cert:
            cmd = [PY, os.path.abspath(__file__), "serve-aiosmtpd-tls", str(self.port), "--maildir", self.maildir,
                   "--cert", self.tls_cert[0], "--key", self.tls_cert[1]]
        else:
            cmd = [PY, AIOSMTPD, str(self.port), "--store", "maildir", "--maildir", self.maildir]
        COMMANDS.append(" ".join(cmd))
        errlog = os.path.join(self.work, "aiosmtpd.log")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(errlog, "a"), text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"aiosmtpd did not start (see {errlog}): " + line)
        wait_port(self.port)

    def stored(self):
        return count_files(os.path.join(self.maildir, "new"))


class SmtpSink(Server):
    name = "smtp-sink"
    port = PORT_SINK

    def start(self):
        cmd = [SMTP_SINK, "-u", "nobody", f"127.0.0.1:{self.port}", "1024"]
        COMMANDS.append(" ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)


# ---------------------------------------------------------------------------------------------
# load


TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def machine_jiffies():
    """(busy, idle) clock ticks of all CPUs since boot: busy = user+nice+system+irq+softirq, idle = idle+iowait."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return v[0] + v[1] + v[2] + v[5] + v[6], v[3] + v[4]


def process_jiffies(pid):
    """utime + stime of a process, all its threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def smtp_source(port, sessions, messages, size, reuse, server_pid=None):
    """Runs smtp-source; returns (msg/s, seconds, stderr, cpu) where cpu is the machine's CPU time
    per message in microseconds while it ran: the server's, smtp-source's, everything else's
    (kernel threads: journal, writeback; interrupts; any other process, this script included)
    and the idle time of all cores."""
    cmd = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
           "-f", "bench@example.org", "-t", "root@mail.example.com", "-M", "client.example.org"]
    if reuse:
        cmd.insert(1, "-d")
    cmd.append(f"127.0.0.1:{port}")
    busy0, idle0 = machine_jiffies()
    server0 = process_jiffies(server_pid) if server_pid else 0
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = run_logged(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.monotonic() - t0
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server1 = process_jiffies(server_pid) if server_pid else 0
    busy1, idle1 = machine_jiffies()
    if r.returncode != 0:
        log("smtp-source failed:", r.stderr.strip()[:300])
    source_us = ((children1.ru_utime - children0.ru_utime) + (children1.ru_stime - children0.ru_stime)) * 1e6
    server_us = (server1 - server0) * TICK_US
    busy_us = (busy1 - busy0) * TICK_US
    cpu = {"server": server_us / messages, "source": source_us / messages,
           "other": max(0.0, busy_us - server_us - source_us) / messages, "idle": (idle1 - idle0) * TICK_US / messages}
    return messages / dt, dt, r.stderr.strip(), cpu


async def _reply(reader):
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("EOF")
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3])


async def _tls_worker(port, body, ctx, counter, total, errors):
    while counter[0] < total:
        counter[0] += 1
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            async def cmd(line, want):
                w.write(line)
                code = await _reply(r)
                if code != want:
                    raise ConnectionError(f"{line[:10]!r} -> {code}")
            if await _reply(r) != 220:
                raise ConnectionError("banner")
            await cmd(b"EHLO client.example.org\r\n", 250)
            await cmd(b"STARTTLS\r\n", 220)
            await w.start_tls(ctx, server_hostname="mail.example.com")
            await cmd(b"EHLO client.example.org\r\n", 250)
            await cmd(b"MAIL FROM:<bench@example.org>\r\n", 250)
            await cmd(b"RCPT TO:<root@mail.example.com>\r\n", 250)
            await cmd(b"DATA\r\n", 354)
            await cmd(body, 250)
            w.write(b"QUIT\r\n")
            await w.drain()
            w.close()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e)[:100])
            counter[0] -= 1
            if len(errors) > 100:
                raise


def make_body(size):
    line = b"X" * 78 + b"\r\n"
    head = b"From: bench@example.org\r\nTo: root@mail.example.com\r\nSubject: bench\r\n\r\n"
    body = head + line * max(0, (size - len(head)) // len(line))
    return body + b".\r\n"


async def _tls_load(port, sessions, messages, size):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    body = make_body(size)
    counter, errors = [0], []
    t0 = time.monotonic()
    await asyncio.gather(*(_tls_worker(port, body, ctx, counter, messages, errors) for _ in range(sessions)))
    return messages / (time.monotonic() - t0), errors


def tls_load(port, sessions, messages, size):
    COMMANDS.append(f"{PY} bench/run.py tls-load --port {port} -s {sessions} -m {messages} -l {size}")
    rate, errors = asyncio.run(_tls_load(port, sessions, messages, size))
    if errors:
        log("tls-load errors:", len(errors), errors[:3])
    return rate


class LatencyProbe(threading.Thread):
    """New connection per message; times the end of DATA ('.' line sent) -> 250 received."""

    def __init__(self, port, size):
        super().__init__(daemon=True)
        self.port, self.body, self.samples, self.errors = port, make_body(size), [], 0
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
                    # Without TCP_NODELAY the final ".\r\n", written right after the body, waits
                    # for the ACK of the body (Nagle) and the server delays that ACK by up to 40 ms.
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    f = s.makefile("rb")

                    def reply():
                        while True:
                            line = f.readline()
                            if not line:
                                raise ConnectionError("EOF")
                            if line[3:4] != b"-":
                                return int(line[:3])
                    reply()
                    for c in (b"EHLO probe.example.org\r\n", b"MAIL FROM:<probe@example.org>\r\n",
                              b"RCPT TO:<root@mail.example.com>\r\n", b"DATA\r\n"):
                        s.sendall(c)
                        reply()
                    s.sendall(self.body[:-3])
                    t0 = time.perf_counter()
                    s.sendall(b".\r\n")
                    code = reply()
                    dt = time.perf_counter() - t0
                    if code == 250:
                        self.samples.append(dt * 1000)
                    else:
                        self.errors += 1
                    s.sendall(b"QUIT\r\n")
            except Exception:  # noqa: BLE001
                self.errors += 1
                time.sleep(0.05)


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


# ---------------------------------------------------------------------------------------------
# aiosmtpd with STARTTLS (same handler as the shared reference, plus a tls_context)


def serve_aiosmtpd_tls(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    a = ap.parse_args(argv)
    sys.path.insert(0, SHARED)
    import aiosmtpd_maildir as ref  # noqa: E402
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    handler = ref.MaildirHandler(a.maildir, parse=True)
    ctl = ref.BacklogController(handler, hostname="127.0.0.1", port=a.port, backlog=1000,
                                server_hostname="mail.example.com", tls_context=ctx, require_starttls=False)
    ctl.start()
    print("READY", os.getpid(), flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1):
        pass
    ctl.stop()


# ---------------------------------------------------------------------------------------------
# the run


def machine_info(work):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    fs = subprocess.run(["df", "-T", work], capture_output=True, text=True).stdout.splitlines()[-1].split()
    mem = subprocess.run(["free", "-m"], capture_output=True, text=True).stdout.splitlines()[1].split()[1]
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "fs": f"{fs[1]} on {fs[0]} (data dir {work})", "mem_mb": mem,
            "python": platform.python_version(), "load_before": os.getloadavg()}


def idle_probe(server, n, label):
    cmd = [PY, IDLE, "--port", str(server.port), "--pid", str(server.pid), "-n", str(n),
           "--parallel", "200", "--hold", "3", "--label", label]
    COMMANDS.append(" ".join(shlex.quote(c) for c in cmd))
    # idle_conns.py reports VmRSS only, and closes its sessions before it prints: RssAnon is
    # sampled here while it runs. Held = the highest level that lasted a whole second (the
    # 3 s hold), not the peak, which includes what opening 200 sessions at a time costs.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err, samples = "", "", []
    while True:
        try:
            out, err = proc.communicate(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            samples.append((time.monotonic(), rss_kb(server.pid, "RssAnon")))
    held = 0
    for i, (t0, _) in enumerate(samples):
        window = [v for t, v in samples[i:] if t - t0 <= 1.0]
        if samples[-1][0] - t0 >= 1.0:
            held = max(held, min(window))
    try:
        return {**json.loads(out.strip().splitlines()[-1]), "anon_held_kB": held}
    except Exception:  # noqa: BLE001
        log("idle probe failed", out[-300:], err[-300:])
        return None


def big_message(server, size_mb):
    body = b"Subject: big\r\n\r\n" + (b"Y" * 998 + b"\r\n") * (size_mb * 1024 * 1024 // 1000)
    before_rss, before_hwm = rss_kb(server.pid), rss_kb(server.pid, "VmHWM")
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as s:
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if line[3:4] != b"-":
                    return line
        reply()
        for c in (b"EHLO big.example.org\r\n", b"MAIL FROM:<big@example.org>\r\n",
                  b"RCPT TO:<root@mail.example.com>\r\n", b"DATA\r\n"):
            s.sendall(c)
            reply()
        s.sendall(body + b".\r\n")
        last = reply()
        s.sendall(b"QUIT\r\n")
    dt = time.monotonic() - t0
    return {"mb": len(body) / 1e6, "reply": last.decode(errors="replace").strip()[:60], "seconds": round(dt, 2),
            "rss_before_kB": before_rss, "hwm_before_kB": before_hwm,
            "rss_after_kB": rss_kb(server.pid), "hwm_after_kB": rss_kb(server.pid, "VmHWM")}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "serve-aiosmtpd-tls":
        return serve_aiosmtpd_tls(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "tls-load":
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("--port", type=int, required=True)
        ap.add_argument("-s", type=int, default=50)
        ap.add_argument("-m", type=int, default=5000)
        ap.add_argument("-l", type=int, default=5120)
        a = ap.parse_args()
        print(json.dumps({"msg_per_s": round(tls_load(a.port, a.s, a.m, a.l), 1)}))
        return 0

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=5120)
    ap.add_argument("--tls-messages", type=int, default=4000)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/relaybait"))
    ap.add_argument("--work", default="/var/tmp/relaybait-bench", help="data directories (its filesystem is reported)")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--quick", action="store_true", help="1 rep, 4,000 messages, skip idle/50 MB (a smoke run)")
    ap.add_argument("--only", default="", help="comma list of phases: throughput,tls,latency,idle,big")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.messages, a.tls_messages = 1, 4000, 1000
    every_phase = {"throughput", "tls", "latency", "idle", "big"}
    phases = set(a.only.split(",")) if a.only else (every_phase - {"idle", "big"} if a.quick else every_phase)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers and probes
    os.makedirs(a.work, exist_ok=True)
    shutil.rmtree(os.path.join(a.work, "runs"), ignore_errors=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    info = machine_info(a.work)
    log("machine:", info)

    if not a.no_build:
        log("building: cmake --workflow --preset release")
        r = run_logged(["cmake", "--workflow", "--preset", "release"], cwd=ROOT, stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            sys.exit("build failed")
    rb = Relaybait(a.work, a.binary)
    aio = Aiosmtpd(a.work)
    sink = SmtpSink(a.work)
    res = {"throughput": {}, "cpu": {}, "tls": {}, "latency": {}, "idle": {}, "quiet": {}, "big": None, "lost": []}

    def measure(server, sessions, reuse, messages):
        server.start()
        try:
            rate, dt, err, cpu = smtp_source(server.port, sessions, messages, a.size, reuse, server.pid)
            res["cpu"].setdefault((f"s{sessions}{' -d' if reuse else ''}", server.name), []).append(cpu)
            time.sleep(0.2)
            stored = server.stored()
            if stored is not None and stored != messages:
                res["lost"].append(f"{server.name} -s {sessions}{' -d' if reuse else ''}: stored {stored} of {messages}")
        finally:
            server.stop()
        log(f"  {server.name:18} -s {sessions:<3} {'-d' if reuse else '  '} {rate:8.0f} msg/s ({dt:.1f} s)"
            f"{'' if stored is None else f', stored {stored}'}  load {os.getloadavg()[0]:.2f}")
        return rate

    if "throughput" in phases:
        try:
            configs = [("s50", 50, False), ("s50 -d", 50, True), ("s200", 200, False)]
            for rep in range(a.reps):
                for key, sessions, reuse in configs:
                    servers = [rb, aio, sink] if sessions == 50 else [rb]
                    if rep % 2:
                        servers = servers[::-1]
                    for srv in servers:
                        res["throughput"].setdefault((key, srv.name), []).append(measure(srv, sessions, reuse, a.messages))
        except Exception as e:  # noqa: BLE001 - keep the other phases' results
            log("phase throughput failed:", repr(e))
            res["lost"].append("phase throughput failed: " + repr(e)[:200])

    if "tls" in phases:
        try:
            # relaybait's generated certificate is used by both servers
            rb.start()
            cert = (os.path.join(rb.data, "tls", "cert.pem"), os.path.join(rb.data, "tls", "key.pem"))
            rb.stop()
            tls_copy = (os.path.join(a.work, "cert.pem"), os.path.join(a.work, "key.pem"))
            shutil.copy(cert[0], tls_copy[0]), shutil.copy(cert[1], tls_copy[1])
            aio_tls = Aiosmtpd(a.work, tls_cert=tls_copy)
            for rep in range(a.reps):
                for srv in ([rb, aio_tls] if rep % 2 == 0 else [aio_tls, rb]):
                    srv.start()
                    try:
                        rate = tls_load(srv.port, 50, a.tls_messages, a.size)
                        stored = srv.stored()
                    finally:
                        srv.stop()
                    log(f"  {srv.name:18} STARTTLS -s 50 {rate:8.0f} msg/s, stored {stored}")
                    res["tls"].setdefault(srv.name, []).append(rate)
        except Exception as e:  # noqa: BLE001 - keep the other phases' results
            log("phase tls failed:", repr(e))
            res["lost"].append("phase tls failed: " + repr(e)[:200])

    if "latency" in phases:
        try:
            for srv in (rb, aio, sink):
                srv.start()
                try:
                    probe = LatencyProbe(srv.port, a.size)
                    probe.start()
                    rate, _, _, _ = smtp_source(srv.port, 50, a.messages, a.size, False)
                    probe.stop_flag.set()
                    probe.join(35)
                finally:
                    srv.stop()
                s = probe.samples
                res["latency"][srv.name] = {"n": len(s), "p50": pct(s, 50), "p99": pct(s, 99), "max": max(s or [0]),
                                            "errors": probe.errors, "rate": rate}
                log(f"  latency {srv.name}: {res['latency'][srv.name]}")
        except Exception as e:  # noqa: BLE001 - keep the other phases' results
            log("phase latency failed:", repr(e))
            res["lost"].append("phase latency failed: " + repr(e)[:200])

    if "idle" in phases:
        try:
            for srv, sizes in ((rb, (5000, 10000)), (aio, (5000,)), (sink, (5000,))):
                for n in sizes:
                    srv.start()
                    try:
                        # Idle = settled: the readiness session is served, relaybait's relay
                        # scheduler has read its queue, and relaybait has been 10 s without a
                        # session, after which it gives memory back (net/idle_memory.hpp).
                        time.sleep(1)
                        started_rss = rss_kb(srv.pid)
                        time.sleep(IDLE_SETTLE_SECONDS - 1)
                        idle_rss = rss_kb(srv.pid)
                        idle_anon = rss_kb(srv.pid, "RssAnon")
                        r = idle_probe(srv, n, f"{srv.name} {n}")
                        anon_after = (r or {}).get("anon_held_kB") or rss_kb(srv.pid, "RssAnon")
                    finally:
                        srv.stop()
                    res["idle"][(srv.name, n)] = {"started_rss_kB": started_rss, "idle_rss_kB": idle_rss,
                                                  "idle_anon_kB": idle_anon, "anon_after_kB": anon_after, **(r or {})}
                    log(f"  idle {srv.name} {n}: idle {idle_rss} kB, {r}")
            # Quiet after a campaign: relaybait gives memory back once no session has been
            # open for 10 s (net/idle_memory.hpp); smtp-sink for comparison.
            for srv in (rb, sink):
                srv.start()
                try:
                    time.sleep(IDLE_SETTLE_SECONDS)
                    before = rss_kb(srv.pid)
                    smtp_source(srv.port, 50, a.messages, a.size, False)
                    loaded = rss_kb(srv.pid)
                    # Quiet = the first drop of at least 10% after the load, or the RSS at the
                    # end of the wait when none came.
                    ended, dropped_after = time.monotonic(), None
                    while time.monotonic() - ended < QUIET_SECONDS:
                        time.sleep(1)
                        if rss_kb(srv.pid) < loaded * 0.9:
                            time.sleep(1)  # let the release finish
                            dropped_after = round(time.monotonic() - ended)
                            break
                    res["quiet"][srv.name] = {"idle_rss_kB": before, "after_load_kB": loaded, "dropped_after_s": dropped_after,
                                              "quiet_rss_kB": rss_kb(srv.pid), "quiet_anon_kB": rss_kb(srv.pid, "RssAnon")}
                finally:
                    srv.stop()
                log(f"  quiet {srv.name}: {res['quiet'][srv.name]}")
        except Exception as e:  # noqa: BLE001 - keep the other phases' results
            log("phase idle failed:", repr(e))
            res["lost"].append("phase idle failed: " + repr(e)[:200])

    if "big" in phases:
        try:
            rb.start()
            try:
                time.sleep(0.5)
                res["big"] = big_message(rb, 50)
            finally:
                rb.stop()
            log("  50 MB:", res["big"])
        except Exception as e:  # noqa: BLE001 - keep the other phases' results
            log("phase big failed:", repr(e))
            res["lost"].append("phase big failed: " + repr(e)[:200])

    info["load_after"] = os.getloadavg()
    shutil.rmtree(os.path.join(a.work, "runs"), ignore_errors=True)
    text = report(a, info, started, res)
    print(text)
    if a.results:
        notes = ""
        if os.path.exists(a.results):
            old = open(a.results).read()
            if NOTES_MARKER in old:
                notes = old[old.index(NOTES_MARKER):]
        with open(a.results, "w") as f:
            f.write(text + "\n" + (notes or NOTES_MARKER + "\n"))
        log("written", a.results)
    return 0


def med(v):
    return statistics.median(v) if v else float("nan")


def report(a, info, started, res):
    L = []
    L.append("# relaybait benchmark results\n")
    L.append(f"Generated by `bench/run.py` on {started:%Y-%m-%d %H:%M} UTC.\n")
    L.append(f"- machine: {info['nproc']} cores ({info['cpu']}), {info['mem_mb']} MB RAM, kernel {info['kernel']}")
    L.append(f"- data dir filesystem: {info['fs']}")
    L.append(f"- load average before/after: {tuple(round(x, 2) for x in info['load_before'])} / "
             f"{tuple(round(x, 2) for x in info.get('load_after', (0, 0, 0)))} (machine shared with other builds)")
    L.append(f"- {a.reps} repetitions, server order alternating; {a.messages} messages of {a.size} bytes per smtp-source run;"
             f" medians below; ratios are relaybait/peer from this run\n")
    t = res["throughput"]
    if t:
        L.append("## Ingest throughput (msg/s, loopback, smtp-source)\n")
        L.append("| load | relaybait | aiosmtpd+Maildir | smtp-sink | rb/aiosmtpd | rb/smtp-sink | all runs (relaybait) |")
        L.append("|---|---:|---:|---:|---:|---:|---|")
        for key in ("s50", "s50 -d", "s200"):
            r = med(t.get((key, "relaybait"), []))
            p = med(t.get((key, "aiosmtpd+Maildir"), []))
            k = med(t.get((key, "smtp-sink"), []))
            runs = ", ".join(f"{x:.0f}" for x in t.get((key, "relaybait"), []))
            L.append(f"| `-{key.replace('s', 's ', 1)}` | {r:.0f} | {p:.0f} | {k:.0f} | "
                     f"{r / p if p == p else float('nan'):.2f}x | {r / k if k == k else float('nan'):.2f}x | {runs} |")
        L.append("")
        L.append("All runs: " + "; ".join(f"{k[1]} {k[0]}: " + ", ".join(f"{x:.0f}" for x in v) for k, v in t.items()) + "\n")
    if res["cpu"]:
        L.append("## Where the machine's time goes (microseconds of CPU per message while smtp-source ran; medians)\n")
        L.append("| load | server | server process | smtp-source | everything else (kernel threads, interrupts, other processes) | all busy | idle (all cores) |")
        L.append("|---|---|---:|---:|---:|---:|---:|")
        for (key, name), runs in res["cpu"].items():
            part = {k: med([c[k] for c in runs]) for k in ("server", "source", "other", "idle")}
            busy = part["server"] + part["source"] + part["other"]
            L.append(f"| `-{key.replace('s', 's ', 1)}` | {name} | {part['server']:.0f} | {part['source']:.0f} | "
                     f"{part['other']:.0f} | {busy:.0f} | {part['idle']:.0f} |")
        L.append("\nWith every core busy, msg/s = cores x 1e6 / (all busy); smtp-source's share is paid in every run, so")
        L.append("the ratio relaybait/smtp-sink cannot exceed smtp-sink's all-busy figure divided by relaybait's.\n")
    if res["lost"]:
        L.append("**Problems (messages missing on disk, failed phases):** " + "; ".join(res["lost"]) + "\n")
    elif t:
        L.append("Every run: the number of files in the Maildir `new/` equals the messages sent (relaybait, aiosmtpd).\n")
    if res["tls"]:
        r, p = med(res["tls"].get("relaybait", [])), med(res["tls"].get("aiosmtpd+Maildir", []))
        L.append("## STARTTLS throughput (msg/s, `bench/run.py tls-load`, 50 sessions, new connection + TLS handshake per message)\n")
        L.append(f"| relaybait | aiosmtpd+Maildir (tls_context) | ratio |\n|---:|---:|---:|\n| {r:.0f} | {p:.0f} | {r / p:.2f}x |\n")
        L.append("Runs: " + "; ".join(f"{k}: " + ", ".join(f"{x:.0f}" for x in v) for k, v in res["tls"].items()) + "\n")
    if res["latency"]:
        L.append("## Final 250 after DATA under load (probe client, new connection per message, while smtp-source -s 50 runs)\n")
        L.append("| server | samples | p50 ms | p99 ms | max ms | load msg/s |\n|---|---:|---:|---:|---:|---:|")
        for name, v in res["latency"].items():
            L.append(f"| {name} | {v['n']} | {v['p50']:.2f} | {v['p99']:.2f} | {v['max']:.2f} | {v['rate']:.0f} |")
        L.append("")
    if res["idle"]:
        L.append("## Idle sessions (`idle_conns.py`: connect, EHLO, hold; RSS from /proc)\n")
        L.append("| server | sessions | established | alive after hold | RSS 1 s after start kB | idle RSS kB (anon) | RSS held kB (anon) | kB per session | anon kB per session |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (name, n), v in res["idle"].items():
            est = v.get('established') or 0
            anon_per = round((v['anon_after_kB'] - v['idle_anon_kB']) / est, 2) if est else None
            L.append(f"| {name} | {n} | {est} | {v.get('alive_after_hold')} | {v.get('started_rss_kB')} | {v['idle_rss_kB']} "
                     f"({v['idle_anon_kB']}) | {v.get('rss_after_hold_kB')} ({v['anon_after_kB']}) | {v.get('kB_per_conn')} | {anon_per} |")
        L.append(f"\nidle RSS = VmRSS {IDLE_SETTLE_SECONDS} s after start: the readiness session (connect, 220, QUIT) was served,")
        L.append("relaybait's relay scheduler has read its queue, and relaybait has given memory back after 10 s without a")
        L.append("session; RSS 1 s after start is before that (it includes the readiness session);")
        L.append("RSS = VmRSS; anon = RssAnon (heap, stacks), the rest is file-backed (binary and shared libraries).")
        L.append("kB per session = VmRSS growth / sessions, all held (the issue's metric; file-backed pages can come")
        L.append("and go with the page cache); held anon = RssAnon held for 1 s while the probe runs; anon kB per session =")
        L.append("(held anon - idle anon) / sessions.")
        L.append("")
    if res["quiet"]:
        L.append(f"## Quiet after a load (smtp-source -s 50 -m {a.messages}, then up to {QUIET_SECONDS} s without a session)\n")
        L.append("| server | idle RSS kB | right after the load kB | RSS dropped 10% after | quiet RSS kB (anon) |\n|---|---:|---:|---:|---:|")
        for name, v in res["quiet"].items():
            after = f"{v['dropped_after_s']} s" if v.get('dropped_after_s') is not None else f"no drop in {QUIET_SECONDS} s"
            L.append(f"| {name} | {v['idle_rss_kB']} | {v['after_load_kB']} | {after} | {v['quiet_rss_kB']} ({v['quiet_anon_kB']}) |")
        L.append("")
    if res["big"]:
        b = res["big"]
        L.append("## One 50 MB message (relaybait)\n")
        L.append(f"Reply `{b['reply']}` after {b['seconds']} s; RSS {b['rss_before_kB']} -> {b['rss_after_kB']} kB, "
                 f"peak (VmHWM) {b['hwm_before_kB']} -> {b['hwm_after_kB']} kB.\n")
    L.append("## Commands\n")
    L.append("```")
    L.append("/usr/bin/python3 bench/run.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    seen = []
    for c in COMMANDS:
        c = re.sub(r"-p(\d+)", r"-p\1", c)
        if c not in seen:
            seen.append(c)
    L.extend(seen)
    L.append("```\n")
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
