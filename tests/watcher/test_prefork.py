"""Issue 14: built-in servers are forked from the watcher's preloaded image, not exec'd.

Real processes on free ports: the watcher and the built-in store, imap, pop and http servers. What
proves a fork without a new interpreter: /proc/<pid>/environ is what the kernel recorded at the last
execve. A forked server's is the watcher's (without MSGSRV_COMPONENT, which the watcher puts in
every server's environment); an exec'd server's names its component. `local.watcher.prefork no`
gives the exec'd kind, and the same test says so.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from msgsrv import messages as M
from tests.conftest import command_path, free_ports, slow_import_path, wait_for
from tests.watcher.conftest import Suite

STORE = ("store", "imap", "pop", "http")
PORTS = ("local.watcher.port", "local.store.port", "service.imap.port", "service.pop.port", "service.http.port",
         "service.imap.sslport", "service.pop.sslport", "service.http.sslport")


class Builtin(Suite):
    """The built-in store group (pop with 2 workers) under a watcher, on free ports."""

    def configure(self, prefork: str = "yes") -> None:
        self.ports = dict(zip(PORTS, free_ports(len(PORTS))))
        settings = {**{k: str(v) for k, v in self.ports.items()}, "local.watcher.httpport": "0",
                    "local.autorestart": "yes", "service.pop.numprocesses": "2",
                    "local.schedule.msprobe.enable": "no", "local.watcher.prefork": prefork}
        for switch in ("local.ens.enable", "local.sched.enable", "local.cert.enable", "local.imta.enable"):
            settings[switch] = "no"
        self.set(settings)

    def start(self) -> None:
        r = self.cli("start-msg")
        assert r.returncode == 0, r.stdout + r.stderr

    def watcher(self) -> int:
        return self.watcher_pid()

    def status(self) -> dict:
        """`watcher status --json` as it is (the watcher's and the total PSS too)."""
        r = self.cli("watcher", "status", "--json")
        assert r.returncode in (0, 3), r.stderr
        return json.loads(r.stdout)

    def greeting(self, port_param: str = "service.imap.port") -> bytes:
        with socket.create_connection(("127.0.0.1", self.ports[port_param]), timeout=5) as s:
            s.settimeout(5)
            return s.recv(64)


@pytest.fixture
def builtin(root, cli):
    b = Builtin(root, cli)
    yield b
    cli("stop-msg", "-f", timeout=60)


def exec_record(pid: int) -> dict[str, str]:
    """The environment the kernel recorded at PID's last execve (/proc/<pid>/environ)."""
    return psutil.Process(pid).environ()


def fd_targets(pid: int) -> dict[int, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
    return out


def new_pid(b: Builtin, c: str, old: list[int]) -> int:
    return wait_for(lambda: (p := b.pids(c)) and not set(p) & set(old) and p[0], timeout=20, every=0.01)


def all_running(b: Builtin) -> dict:
    def check():
        st = b.status()
        rows = {c["name"]: c for c in st["components"]}
        return st if all(rows[c]["state"] == "RUNNING" for c in STORE) else None

    return wait_for(check, timeout=30, every=0.05)


@pytest.mark.parametrize("prefork", ["yes", "no"])
def test_issue_14_a_built_in_server_is_forked_from_the_watcher_unless_prefork_is_off(builtin, prefork):
    builtin.configure(prefork)
    builtin.start()
    watcher = builtin.watcher()
    imapd = builtin.pids("imap")[0]
    p = psutil.Process(imapd)
    assert p.ppid() == watcher  # the watcher stays the parent either way
    assert os.readlink(f"/proc/{imapd}/exe") == os.readlink(f"/proc/{watcher}/exe")
    assert p.name() == "imapd"
    assert builtin.greeting().startswith(b"* OK")
    if prefork == "yes":
        # no execve since the watcher's: the kernel's record is the watcher's environment
        assert exec_record(imapd) == exec_record(watcher)
        assert "MSGSRV_COMPONENT" not in exec_record(imapd)
        assert p.cmdline() == ["msgsrv-server", "imap"]
    else:
        assert exec_record(imapd)["MSGSRV_COMPONENT"] == "imap"
        assert p.cmdline()[-3:] == ["-m", "msgsrv.services", "imap"]
    # a forked http answers an unknown method with 501 (RFC 9110 §9.1)
    h = http.client.HTTPConnection("127.0.0.1", builtin.ports["service.http.port"], timeout=10)
    h.request("BREW", "/")
    assert h.getresponse().status == 501
    h.close()


def test_issue_14_a_forked_server_holds_no_descriptor_of_the_watcher(builtin):
    builtin.configure()
    builtin.start()
    watcher = builtin.watcher()
    theirs = fd_targets(watcher)
    # every epoll descriptor reads the same (anon_inode:[eventpoll]): counted below, not compared
    shared_with_watcher = set(theirs.values()) - {"/dev/null", "anon_inode:[eventpoll]"}
    for c in ("imap", "pop", "http"):
        for pid in builtin.pids(c):
            fds = fd_targets(pid)
            assert fds[0] == "/dev/null"
            assert fds[1] == fds[2] == str(builtin.root.component_log(f"{c}.out"))
            rest = {fd: t for fd, t in fds.items() if fd > 2}
            assert not set(rest.values()) & shared_with_watcher, (c, pid, rest, theirs)
            assert not any("pidfd" in t for t in rest.values()), (c, rest)
            assert not any(t.endswith(("watcher.lock", "journal.jsonl", "/console")) for t in rest.values()), rest
            # one event loop, its own: a single epoll descriptor (the watcher's would be a second)
            assert sum(t == "anon_inode:[eventpoll]" for t in rest.values()) == 1, (c, rest)
    # the two pop workers share the listener the watcher bound for them, and nothing else of its
    a, b = (set(fd_targets(p).values()) for p in builtin.pids("pop"))
    assert {t for t in a & b if t.startswith("socket:")}, "the pop workers share their listener"


def test_issue_14_a_killed_forked_imapd_is_forked_again_and_greets(builtin):
    builtin.configure()
    builtin.start()
    watcher = builtin.watcher()
    old = builtin.pids("imap")
    os.kill(old[0], signal.SIGKILL)
    fresh = new_pid(builtin, "imap", old)
    all_running(builtin)
    assert psutil.Process(fresh).ppid() == watcher
    assert exec_record(fresh) == exec_record(watcher)  # forked again: no interpreter start
    assert wait_for(lambda: builtin.greeting().startswith(b"* OK"), timeout=10)
    lines = builtin.root.watcher_log.read_text()
    assert M.WATCHED_EXITED.format(daemon="imapd", pid=old[0]) in lines
    assert "Received request to restart:  store imap pop http" in lines


def test_issue_14_forked_servers_are_adopted_after_the_watcher_dies_and_stop_leaves_nothing(builtin, cli):
    builtin.configure()
    builtin.start()
    first = builtin.watcher()
    before = {c: builtin.pids(c) for c in STORE}
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE)
    # a new watcher takes the lock (no server inherited it) and re-adopts the forked servers
    builtin.start()
    second = builtin.watcher()
    assert second != first
    st = all_running(builtin)
    rows = {c["name"]: c for c in st["components"]}
    for c in STORE:
        assert rows[c]["pids"] == before[c], c
    assert M.PREVIOUS_DIED.format(pid=first) in builtin.root.watcher_log.read_text()
    # the adopted imapd dies: the new watcher forks the store group again
    os.kill(before["imap"][0], signal.SIGKILL)
    fresh = new_pid(builtin, "imap", before["imap"])
    all_running(builtin)
    assert psutil.Process(fresh).ppid() == second
    assert wait_for(lambda: builtin.greeting().startswith(b"* OK"), timeout=10)
    everyone = [second, *before["store"], *before["pop"], *before["http"],
                *(p for c in STORE for p in builtin.pids(c))]
    r = cli("stop-msg")
    assert r.returncode == 0, r.stdout + r.stderr
    alive = [p for p in set(everyone) if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_issue_14_status_json_shows_pss_per_component_and_in_all(builtin):
    builtin.configure()
    builtin.start()
    st = builtin.status()
    rows = {c["name"]: c for c in st["components"]}
    for c in STORE:
        assert rows[c]["pss"] > 0, rows[c]
    assert rows["ens"]["pss"] is None  # not running: no figure
    assert st["watcher"]["pss"] > 0
    total = st["watcher"]["pss"] + sum(rows[c]["pss"] for c in STORE)
    assert st["pss_total"] == total


def test_issue_14_stop_msg_f_ends_forked_servers_by_pid_when_the_watcher_is_gone(builtin, cli):
    builtin.configure()
    builtin.start()
    watcher = builtin.watcher()
    servers = [p for c in STORE for p in builtin.pids(c)]
    os.kill(watcher, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(watcher) or psutil.Process(watcher).status() == psutil.STATUS_ZOMBIE)
    assert all(psutil.pid_exists(p) for p in servers)  # a forked server outlives its watcher, as an exec'd one
    r = cli("stop-msg", "-f")
    assert r.returncode == 0, r.stdout + r.stderr

    def gone():
        return all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in servers)

    assert wait_for(gone, timeout=10)


def test_issue_14_a_forked_server_runs_in_its_own_cgroup_where_the_watcher_makes_them(builtin):
    from msgsrv.watcher import cgroup

    if cgroup.Cgroups.detect(builtin.root.base) is None:
        pytest.skip("no writable cgroup v2 tree here: process groups only (covered above)")
    builtin.configure()
    builtin.start()
    imapd = builtin.pids("imap")[0]
    group = cgroup.of_pid(imapd)
    assert group is not None and group.endswith("-imap-0"), group
    assert cgroup.procs(group) == [imapd]
    os.kill(imapd, signal.SIGKILL)
    new_pid(builtin, "imap", [imapd])
    all_running(builtin)
    fresh = builtin.pids("imap")[0]
    assert cgroup.of_pid(fresh) == group  # the restarted one joined the same, emptied cgroup


def test_issue_14_a_forked_certd_makes_the_pair_of_a_new_root_without_keeping_cryptography(builtin):
    """certd (forked, with its cgroup-joining thread) makes the self-signed pair in a fork of its
    own that imports cryptography; certd itself reads the pair with the standard library, so the
    package (~14 MB of its own pages) is never in it: not mapped, and STATUS still tells the
    fingerprint and the end date."""
    from msgsrv import tls

    builtin.configure()
    port = free_ports(1)[0]
    builtin.set({"local.cert.enable": "yes", "local.cert.port": str(port)})
    crt, _ = tls.default_paths(builtin.root)
    assert not crt.exists()
    builtin.start()
    certd = builtin.pids("cert")[0]
    assert exec_record(certd).get("MSGSRV_COMPONENT") is None  # forked, not exec'd
    info = tls.certificate_info(crt)
    assert info.self_signed and info.days_left() > 800
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rwb")
        assert f.readline() == b"* OK certd ready\r\n"
        f.write(b"STATUS\r\n")
        f.flush()
        status = f.readline().decode()
    assert f"sha256={info.sha256}" in status and f"expires={info.not_after:%Y-%m-%d}" in status
    with open(f"/proc/{certd}/maps") as maps:
        assert "cryptography" not in maps.read()


def test_neither_the_watcher_nor_a_forked_mshttpd_carries_aiohttp(builtin):
    """mshttpd parses with h11 (~8 ms to import): aiohttp (~130 ms, its C parts mapped in every
    process that imports it) is no longer in the watcher's preload, so not in a cold start, nor in
    the image every server shares; the watcher imports it only for its console, at the console's
    first connection."""
    builtin.configure()
    builtin.start()
    mshttpd = builtin.pids("http")[0]
    assert exec_record(mshttpd).get("MSGSRV_COMPONENT") is None  # forked, not exec'd
    h = http.client.HTTPConnection("127.0.0.1", builtin.ports["service.http.port"], timeout=10)
    h.request("GET", "/health")
    assert h.getresponse().status == 200
    h.close()
    for pid in (builtin.watcher(), mshttpd):
        with open(f"/proc/{pid}/maps") as maps:
            assert "aiohttp" not in maps.read()


def oom_adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


@pytest.mark.parametrize("prefork", ["yes", "no"])
def test_the_oom_killer_is_pointed_at_a_server_before_the_watcher(builtin, prefork):
    """A pre-forked watcher's resident size (every server's code, shared with them) often made it
    the OOM killer's first choice: then every server ran unsupervised. The watcher lowers its
    oom_score_adj (to -500 where it may, else from the raised value it was started with to 0), and
    every server it starts, forked or exec'd, first or restarted, gets the value back."""
    builtin.configure(prefork=prefork)
    r = subprocess.run(["sh", "-c", 'echo 300 > /proc/self/oom_score_adj && exec "$0"', command_path("start-msg")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    watcher = builtin.watcher()
    assert oom_adj(watcher) in (-500, 0)
    servers = [p for c in ("store", "imap", "pop", "http") for p in builtin.pids(c)]
    assert len(servers) == 5 and [oom_adj(p) for p in servers] == [300] * 5
    imapd = builtin.pids("imap")[0]
    os.kill(imapd, signal.SIGKILL)
    new_pid(builtin, "imap", [imapd])
    assert oom_adj(builtin.pids("imap")[0]) == 300


SLOW_MODULE = """import time
time.sleep(1.0)
VALUE = 42
"""

FORK_DURING_IMPORT = """if True:
    import os, signal, sys, threading, time
    sys.path.insert(0, {where!r})
    from msgsrv.watcher import prefork
    loader = threading.Thread(target=__import__, args=("slowmod",))
    loader.start()
    time.sleep(0.3)  # the loader is inside slowmod's import, holding its module lock
    pid = os.fork()
    if pid == 0:
        signal.alarm(3)
        if {forget}:
            prefork._forget_imports_in_progress()
        from slowmod import VALUE
        os._exit(0 if VALUE == 42 else 3)
    loader.join()
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("forget", [True, False])
def test_a_server_forked_while_another_thread_imports_can_import_that_module(tmp_path, forget):
    """The console loads its application on a worker thread while the watcher's loop may fork a
    server; a fork in the middle of an import leaves the child a module lock that no thread of
    its own holds. The child forgets it (prefork._become_server), so its own import of that module
    runs again from scratch; without that (forget=False, what the test shows happen) it waits
    for ever, here until SIGALRM."""
    import sys

    (tmp_path / "slowmod.py").write_text(SLOW_MODULE)
    code = FORK_DURING_IMPORT.format(where=str(tmp_path), forget=forget)
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[-1]) == (0 if forget else -signal.SIGALRM)


def test_a_server_restarted_while_the_console_loads_is_execd_not_forked(builtin, tmp_path, monkeypatch):
    """The console loads its application (aiohttp: TLS contexts, OpenSSL's locks) on a worker
    thread at its first connection; a server forked meanwhile could inherit one of those locks held
    for ever. The watcher exec's a server it (re)starts while the console loads (here 3 s), and
    forks again once it has loaded."""
    monkeypatch.setenv("PYTHONPATH", slow_import_path(tmp_path / "shim", "jinja2", 3))
    builtin.configure()
    console = free_ports(1)[0]
    builtin.set({"local.watcher.httpport": str(console), "local.autorestart.timeout": "1"})
    builtin.start()
    first = builtin.pids("imap")
    assert "MSGSRV_COMPONENT" not in exec_record(first[0])  # forked
    page = socket.create_connection(("127.0.0.1", console), timeout=10)
    page.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # the console starts loading
    time.sleep(0.5)
    builtin.kill(first[0])
    second = new_pid(builtin, "imap", first)
    assert exec_record(second)["MSGSRV_COMPONENT"] == "imap"  # exec'd: the console was loading
    assert all_running(builtin) and builtin.greeting().startswith(b"* OK")
    page.settimeout(20)
    assert page.recv(100).startswith(b"HTTP/1.1 ")  # loaded: it answers
    page.close()
    time.sleep(1.5)  # out of the restart window
    builtin.kill(second)
    third = new_pid(builtin, "imap", [second])
    assert "MSGSRV_COMPONENT" not in exec_record(third)  # forked again
    assert all_running(builtin) and builtin.greeting().startswith(b"* OK")
