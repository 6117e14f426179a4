"""Operators read relaybait's Maildir++ with an IMAP server (as FakeOpenSmtpRelay users did with
Dovecot): a throwaway Debian dovecot (dovecot-imapd) on a loopback port serves DATA/maildir, and
imaplib reads back exactly what was sent, trace headers included."""
from __future__ import annotations

import imaplib
import os
import pwd
import grp
import shutil
import smtplib
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import tempfile

from conftest import relaybait_config
from relaybait_testlib import Relaybait, make_message, queue_id_from, split_trace, wait_for


@pytest.fixture
def server():
    """relaybait with its data outside pytest's temp root: a pytest process starting in parallel
    resets that root to mode 0700, which would lock Dovecot's unprivileged user out."""
    workdir = Path(tempfile.mkdtemp(prefix="relaybait-dovecot-", dir="/var/tmp"))
    workdir.chmod(0o711)
    srv = Relaybait(workdir, relaybait_config())
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(workdir, ignore_errors=True)

IMAP_PASSWORD = "imap-test-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    def __init__(self, workdir: Path, maildir: Path):
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not os.path.exists(binary):
            raise AssertionError("dovecot is not installed (package dovecot-imapd): run scripts/install-deps.sh")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        root = os.getuid() == 0
        for d in ("run", "state", "home"):
            (workdir / d).mkdir(parents=True, exist_ok=True)
        self.log = workdir / "dovecot.log"
        uid, gid = os.getuid(), os.getgid()
        if root:
            # Dovecot never accesses mail as uid 0: serve it as nobody, who is given the
            # test's Maildir (as a dedicated vmail user would be in a deployment).
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
            for dirpath, dirnames, filenames in os.walk(maildir):
                os.chown(dirpath, uid, gid)
                for name in filenames:
                    os.chown(os.path.join(dirpath, name), uid, gid)
            os.chown(workdir / "home", uid, gid)
            # ...and may traverse (not list) the private test directories above it.
            for parent in list(Path(maildir).resolve().parents) + [workdir.resolve()] + list(workdir.resolve().parents):
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        internal = "dovecot" if root else user
        login = "dovenull" if root else user
        (workdir / "dovecot.conf").write_text(f"""
base_dir = {workdir}/run
state_dir = {workdir}/state
log_path = {self.log}
info_log_path = {self.log}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {'dovecot' if root else group}
default_login_user = {login}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{maildir}
mail_privileged_group =
passdb {{
  driver = static
  args = password={IMAP_PASSWORD}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={workdir}/home
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
service submission-login {{
  chroot =
}}
""")
        self.proc = subprocess.Popen([binary, "-F", "-c", str(workdir / "dovecot.conf")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("dovecot exited: " + self.proc.stdout.read().decode() + self.log_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("dovecot did not start: " + self.log_text())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def dovecot_for():
    instances = []
    root = Path(tempfile.mkdtemp(prefix="dovecot-", dir="/var/tmp"))  # outside pytest's 0700 root
    root.chmod(0o711)

    def start(maildir: Path) -> Dovecot:
        d = Dovecot(root / f"dovecot{len(instances)}", maildir)
        instances.append(d)
        return d

    yield start
    for d in instances:
        d.stop()
    shutil.rmtree(root, ignore_errors=True)


def fetch_all(port: int) -> dict[str, list[bytes]]:
    """Every message of every folder, as raw RFC822 bytes."""
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login("relaybait", IMAP_PASSWORD)
    typ, folders = imap.list()
    assert typ == "OK", folders
    names = []
    for line in folders:
        # (\HasNoChildren) "." INBOX   |   (\HasNoChildren) "." Probes
        name = line.decode().rsplit(" ", 1)[1].strip('"')
        names.append(name)
    out = {}
    for name in names:
        typ, _ = imap.select(f'"{name}"', readonly=True)
        assert typ == "OK", (name, _)
        typ, data = imap.search(None, "ALL")
        msgs = []
        for num in data[0].split():
            typ, parts = imap.fetch(num, "(BODY.PEEK[])")
            assert typ == "OK"
            msgs.append(parts[0][1])
        out[name] = msgs
    imap.logout()
    return out


def test_dovecot_reads_relaybait_maildir(server, dovecot_for):
    sent = {}
    for i in range(3):
        msg = make_message(f"imap {i} {uuid.uuid4().hex}", body=f"Body number {i}\r\nÄÖÜ\r\n".encode())
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname="imap.example.org", timeout=30) as s:
            s.mail("alice@example.org")
            s.rcpt(f"user{i}@example.com")
            code, resp = s.data(msg)
            assert code == 250, resp
            sent[queue_id_from(resp)] = msg
    files = {}
    for qid in sent:
        row = wait_for(lambda: server.message_by_queue_id(qid), 10, what=f"message {qid}")
        files[qid] = server.message_file(row).read_bytes()

    dovecot = dovecot_for(server.data_dir / "maildir")
    folders = fetch_all(dovecot.port)
    print("IMAP folders:", {k: len(v) for k, v in folders.items()})
    assert "INBOX" in folders, folders.keys()
    everything = [m for msgs in folders.values() for m in msgs]
    for qid, msg in sent.items():
        # what IMAP returns is the Maildir file: relaybait's trace headers + the bytes sent
        matches = [m for m in everything if m == files[qid]]
        assert matches, (f"message {qid} not served by IMAP as stored; folders "
                         f"{ {k: len(v) for k, v in folders.items()} }\n{dovecot.log_text()[-2000:]}")
        trace = split_trace(matches[0], msg)
        assert any(n.lower() == "received" for n, _ in trace)
        assert matches[0] in folders["INBOX"], "plain messages belong in the inbox (Maildir++ root)"
