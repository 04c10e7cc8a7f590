"""Real Dovecot (imap, pop) and Postfix (smtp) from Debian's packages under the watcher (issue 7).

They replace the built-in servers through `local.<component>.command`, with minimal configurations
written here, on free loopback ports, in a temporary directory:

- imap and pop are two Dovecot instances (`dovecot -F -c FILE`, one protocol each), so each
  component has its own master process and the store group restarts both, as SPEC §1 wants.
- smtp is Postfix `start-fg`, run as PID 1 of a new PID namespace
  (`unshare --pid --fork --kill-child postfix -c DIR start-fg`). postfix-script keeps the master in
  the foreground only when it is PID 1 (`exec master -i`); otherwise it runs `master -s`, which makes
  itself a session leader and leaves the watcher's process group, so stopping the component would
  orphan it. In the namespace the master stays in the group, and when it dies the kernel ends every
  Postfix process with it.

Selected with `-m integration`; skipped (with the reason) without root or the binaries.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_ports
from tests.integration.conftest import need
from tests.watcher.conftest import Suite, wait_for

pytestmark = pytest.mark.integration

DOVECOT_CONF = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = {instance}
protocols = {protocol}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
log_path = /dev/stderr
first_valid_uid = 0
mail_location = maildir:{dir}/mail/%u
passdb {{
  driver = static
  args = password=secret
}}
userdb {{
  driver = static
  args = uid=root gid=root home={dir}/mail/%u
}}
service {login}-login {{
  inet_listener {protocol} {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener {protocol}s {{
    port = 0
  }}
}}
"""

POSTFIX_MAIN = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = localhost.localdomain
mydestination =
relayhost =
alias_maps =
alias_database =
maillog_file = /dev/stdout
smtpd_banner = $myhostname ESMTP
"""

# max_use=1: an smtpd serves one connection and exits, so a stopped master means a hung service
# (an idle smtpd left over would otherwise answer for it).
POSTFIX_MASTER = """\
127.0.0.1:{port} inet n - n - - smtpd -o max_use=1
postlog   unix-dgram n - n - 1 postlogd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
local     unix - n n - - local
virtual   unix - n n - - virtual
lmtp      unix - - n - - lmtp
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
"""


def greeting(port: int, timeout: float = 2.0) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            return s.recv(200)
    except OSError:
        return b""


class RealDaemons:
    def __init__(self, suite: Suite, cli, tag: str):
        self.suite, self.cli = suite, cli
        # Dovecot's login processes and Postfix's daemons drop root: their directories must be
        # reachable by dovenull and postfix, which pytest's 0700 tmp tree is not.
        self.dir = Path(tempfile.mkdtemp(prefix=f"msgsrv-{tag}-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.tag = self.dir.name

    def configure(self, dovecot: str, postfix: str, unshare: str) -> None:
        (watcher, self.imap, self.pop, self.smtp, lmtp, jc) = free_ports(6)
        for proto, login, port in (("imap", "imap", self.imap), ("pop3", "pop3", self.pop)):
            d = self.dir / proto
            d.mkdir(mode=0o755)
            (d / "dovecot.conf").write_text(DOVECOT_CONF.format(
                dir=d, instance=f"{self.tag}-{proto}", protocol=proto, login=login, port=port))
        pf = self.dir / "postfix"
        for sub in ("conf", "queue", "data"):
            (pf / sub).mkdir(parents=True, mode=0o755)
        shutil.chown(pf / "data", "postfix")
        (pf / "conf" / "main.cf").write_text(POSTFIX_MAIN.format(dir=pf))
        (pf / "conf" / "master.cf").write_text(POSTFIX_MASTER.format(port=self.smtp))
        settings = {
            # the lines the README's "use your real mail servers" section shows
            "local.imap.command": f"{dovecot} -F -c {self.dir}/imap/dovecot.conf",
            "local.pop.command": f"{dovecot} -F -c {self.dir}/pop3/dovecot.conf",
            "local.dispatcher.command": f"{unshare} --pid --fork --kill-child {postfix} -c {pf}/conf start-fg",
            "service.imap.port": self.imap, "service.pop.port": self.pop, "service.smtp.port": self.smtp,
            "service.imap.numprocesses": 1, "service.pop.numprocesses": 1,
            "service.pop.enablesslport": "no", "service.smtp.enablesslport": "no",
            # and the test's own: free ports, only the components under test, quick verdicts
            "local.watcher.port": watcher, "local.watcher.httpport": 0, "service.lmtp.port": lmtp, "local.job_controller.port": jc,
            "local.store.enable": "no", "service.http.enable": "no", "local.ens.enable": "no",
            "local.sched.enable": "no", "local.cert.enable": "no", "local.mmp.enable": "no",
            "local.imta.enable": "yes", "local.autorestart": "yes", "local.schedule.msprobe.enable": "no",
            "local.imap.stoptimeout": 2, "local.pop.stoptimeout": 2, "local.dispatcher.stoptimeout": 2,
            "local.dispatcher.starttimeout": 30,
            "local.probe.imap.timeout": 2, "local.probe.pop.timeout": 2, "local.probe.smtp.timeout": 3,
        }
        f = self.suite.base / "import.txt"
        f.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        r = self.cli("configutil", "-i", str(f))
        assert r.returncode == 0, r.stderr
        # Postfix's own set-up step: queue directories with their owners and modes.
        r = self.cli_raw([postfix, "-c", f"{pf}/conf", "check"])
        assert r.returncode == 0, r.stderr

    @staticmethod
    def cli_raw(argv):
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        r = self.cli("start-msg", timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr + self.logs()

    def logs(self) -> str:
        out = []
        for c in ("imap", "pop", "dispatcher"):
            p = self.suite.root.component_log(f"{c}.out")
            if p.exists():
                out.append(f"--- {c}\n" + p.read_text()[-1500:])
        return "\n".join(out)

    def pid(self, c: str) -> int:
        return self.suite.pids(c)[0]

    def postfix_master(self) -> psutil.Process:
        kids = psutil.Process(self.pid("dispatcher")).children(recursive=True)
        return next(p for p in kids if p.name() == "master")

    def probe(self, *services: str) -> tuple[int, dict]:
        r = self.cli("msprobe", "--json", *services, timeout=90)
        return r.returncode, {s["service"]: s for s in json.loads(r.stdout)["services"]}

    def restarted(self, c: str, old: int, port: int) -> bool:
        pids = self.suite.pids(c)
        return bool(pids) and pids[0] != old and self.suite.status()[c]["state"] == "RUNNING" \
            and bool(greeting(port))

    def ours(self) -> list[psutil.Process]:
        """Every process still running that belongs to this test's daemons."""
        found = []
        for p in psutil.process_iter(["cmdline", "name"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if self.tag in cmd or str(self.dir) in cmd:
                found.append(p)
        return found

    def cleanup(self) -> None:
        self.cli("stop-msg", "-f", timeout=60)
        for p in self.ours():
            try:
                p.send_signal(signal.SIGCONT)
                p.kill()
            except psutil.Error:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def daemons(suite, cli, request):
    if os.geteuid() != 0:
        pytest.skip("Dovecot and Postfix are run as root here (they drop privileges themselves)")
    dovecot = need("dovecot", "dovecot-imapd")
    need("doveconf", "dovecot-core")
    if not Path("/usr/lib/dovecot/pop3-login").exists():
        pytest.skip("Dovecot's POP3 server not installed (Debian package dovecot-pop3d)")
    postfix = need("postfix", "postfix")
    unshare = need("unshare", "util-linux")
    probe = RealDaemons.cli_raw([unshare, "--pid", "--fork", "--kill-child", "true"])
    if probe.returncode != 0:
        pytest.skip(f"cannot make a PID namespace for Postfix's start-fg: {probe.stderr.strip()}")
    d = RealDaemons(suite, cli, request.node.name[:20].replace("_", ""))
    try:
        d.configure(dovecot, postfix, unshare)
        d.start()
        yield d
    finally:
        d.cleanup()


# -- the tests ----------------------------------------------------------------------------------
def test_start_msg_runs_dovecot_and_postfix_and_msprobe_finds_them_healthy(daemons):
    d = daemons
    assert greeting(d.imap).startswith(b"* OK") and b"Dovecot" in greeting(d.imap)
    assert greeting(d.pop).startswith(b"+OK")
    assert greeting(d.smtp).startswith(b"220 localhost.localdomain ESMTP")
    st = d.suite.status()
    for c in ("imap", "pop", "dispatcher"):
        assert st[c]["state"] == "RUNNING", (c, st[c])
    assert d.postfix_master().pid != d.pid("dispatcher")
    rc, res = d.probe("imap", "pop", "smtp")
    assert rc == 0, res
    assert {s: r["status"] for s, r in res.items()} == {"imap": "OK", "pop": "OK", "smtp": "OK"}
    r = d.cli("stop-msg", timeout=60)
    assert r.returncode == 0, r.stderr
    for port in (d.imap, d.pop, d.smtp):
        assert greeting(port, 0.5) == b""
    wait_for(lambda: not d.ours(), timeout=10)  # no Dovecot or Postfix process outlives stop-msg


def test_kill_9_of_dovecot_master_restarts_the_store_group(daemons):
    d = daemons
    imap, pop = d.pid("imap"), d.pid("pop")
    os.kill(imap, signal.SIGKILL)
    wait_for(lambda: d.restarted("imap", imap, d.imap) and d.restarted("pop", pop, d.pop), timeout=30)
    assert f"Watched 'imapd' process {imap} exited abnormally" in d.suite.log_lines()
    assert "Received request to restart:  imap pop" in d.suite.log_lines()
    assert d.suite.status()["imap"]["restarts"] == 1
    assert d.probe("imap", "pop")[0] == 0


def test_kill_9_of_postfix_master_restarts_the_dispatcher(daemons):
    d = daemons
    wrapper, master = d.pid("dispatcher"), d.postfix_master()
    master.kill()
    wait_for(lambda: d.restarted("dispatcher", wrapper, d.smtp), timeout=60)
    assert not psutil.pid_exists(master.pid) or master.status() == psutil.STATUS_ZOMBIE
    assert d.postfix_master().pid != master.pid
    assert "Received request to restart:  dispatcher" in d.suite.log_lines()
    assert d.probe("smtp")[0] == 0


def test_stopped_dovecot_master_is_hung_and_msprobe_restarts_it(daemons):
    d = daemons
    imap = d.pid("imap")
    os.kill(imap, signal.SIGSTOP)  # accepts (the kernel's backlog) but never answers
    t0 = time.monotonic()
    rc, res = d.probe("imap")
    assert rc == 1 and res["imap"]["status"] == "HUNG", res
    wait_for(lambda: d.restarted("imap", imap, d.imap), timeout=30)
    assert time.monotonic() - t0 < 30
    assert not psutil.pid_exists(imap) or psutil.Process(imap).status() == psutil.STATUS_ZOMBIE
    assert d.probe("imap")[0] == 0


def test_stopped_postfix_master_is_hung_and_msprobe_restarts_the_dispatcher(daemons):
    d = daemons
    assert greeting(d.smtp).startswith(b"220")  # the smtpd that served this exits (max_use=1)
    wrapper, master = d.pid("dispatcher"), d.postfix_master()

    def smtpd_left() -> bool:
        for p in master.children():
            with contextlib.suppress(psutil.NoSuchProcess):  # a child that ends as we look
                if p.name() == "smtpd":
                    return True
        return False

    wait_for(lambda: not smtpd_left(), timeout=10)
    master.suspend()
    rc, res = d.probe("smtp")
    assert rc == 1 and res["smtp"]["status"] == "HUNG", res
    wait_for(lambda: d.restarted("dispatcher", wrapper, d.smtp), timeout=60)
    assert d.probe("smtp")[0] == 0
