"""Issue 14: `local.<component>.ready`, a readiness rule that is not a port.

`port` (the default): an external command is RUNNING once its port accepts. `started`: RUNNING once
it has been spawned and has not exited within operations.STARTED_GRACE, for a command that listens
on no port. Real processes (`sleep`, `sh -c 'exit 1'`), the real commands, a temporary server root.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import psutil

from msgsrv import messages as M
from msgsrv.control.client import WatcherClient, WatcherUnavailable
from tests.watcher.conftest import command_path, wait_for

SLEEP = f"{shutil.which('sleep')} 1000"


def running(suite, c: str, old: list[int] | tuple = ()) -> dict:
    """Wait until C is RUNNING with live pids other than OLD; its status row."""

    def check():
        row = suite.status()[c]
        pids = row["pids"]
        if row["state"] == "RUNNING" and pids and not set(pids) & set(old) and all(map(psutil.pid_exists, pids)):
            return row
        return None

    return wait_for(check, timeout=15, every=0.02)


def test_ready_started_a_command_without_a_port_is_running_at_once_and_restarted_after_kill(suite, cli):
    suite.configure(components=("store",), **{"local.store.command": SLEEP, "local.store.ready": "started",
                                              "local.store.starttimeout": "30"})
    r = cli("start-msg", timeout=20)  # with `port` it would wait the whole 30 s start timeout, then fail
    assert r.returncode == 0, r.stderr
    row = running(suite, "store")
    (pid,) = row["pids"]
    assert psutil.Process(pid).cmdline() == SLEEP.split()
    assert not any("not accepting" in ln for ln in suite.log_lines())
    suite.kill(pid)
    row = running(suite, "store", old=[pid])
    assert row["restarts"] == 1
    assert M.WATCHED_EXITED.format(daemon="stored", pid=pid) in suite.log_lines()


def test_ready_port_a_command_that_does_not_listen_never_becomes_running(suite, cli):
    suite.configure(components=("store",), **{"local.store.command": SLEEP, "local.store.ready": "port",
                                              "local.store.starttimeout": "1", "local.autorestart": "no"})
    r = cli("start-msg", timeout=30)
    assert r.returncode == 1
    assert "store: not accepting within 1 s" in r.stderr
    st = wait_for(lambda: (st := suite.status()) and st["store"]["state"] == "FATAL" and st)
    assert st["store"]["pids"] == []
    assert "Starting store server" in suite.log() and " failed" in suite.log()


def test_ready_started_a_command_that_exits_at_once_spends_the_budget_then_is_fatal(suite, cli, tmp_path):
    starts = tmp_path / "starts"
    cmd = f"/bin/sh -c 'echo x >> {starts}; exit 1'"
    suite.configure(components=("store",), **{"local.store.command": cmd, "local.store.ready": "started",
                                              "local.autorestart.timeout": "600"})
    cli("start-msg", timeout=30)
    wait_for(lambda: "giving up" in suite.log(), timeout=30)
    st = wait_for(lambda: (st := suite.status()) and st["store"]["state"] == "FATAL" and st)
    assert st["store"]["pids"] == [] and st["store"]["last_exit"]["status"] == 1
    assert starts.read_text().count("x") == 3  # the first start and the budget's 2 restarts, no more
    lines = suite.log_lines()
    assert lines.count(M.RECEIVED_RESTART.format(units="store")) == 2
    assert M.GIVING_UP.format(c="store", n=3, units="store", window=600) in lines


def test_ready_bad_values_are_refused_with_one_line(suite, cli, root):
    suite.configure(components=("store",))
    before = root.config_file.read_bytes()
    for bad in ("listening", "port started", "1"):
        r = cli("configutil", "-o", "local.store.ready", "-v", bad)
        assert r.returncode == 2, (bad, r.stderr)
        assert r.stderr.strip() == f"configutil: invalid value '{bad}' for local.store.ready: expected port or started"
        assert r.stdout == ""
    assert root.config_file.read_bytes() == before
    r = cli("configutil", "-o", "local.nosuch.ready", "-v", "port")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    for good in ("started", "port"):
        assert cli("configutil", "-o", "local.imap.ready", "-v", good).returncode == 0
        assert cli("configutil", "-o", "local.imap.ready").stdout.strip() == good


def test_two_hundred_workers_of_one_command_all_run_and_all_stop(suite, cli):
    """service.<svc>.numprocesses above the old limit of 64 (the shared harness's overhead test runs
    N = 200): every worker is its own RUNNING process, and stop-msg leaves none of them."""
    suite.configure(components=("imap",), **{"local.imap.command": SLEEP, "local.imap.ready": "started",
                                             "service.imap.numprocesses": "200"})
    r = cli("start-msg", timeout=60)
    assert r.returncode == 0, r.stderr
    row = running(suite, "imap")
    pids = row["pids"]
    assert len(set(pids)) == 200
    assert all(psutil.Process(p).cmdline() == SLEEP.split() for p in pids)
    r = cli("stop-msg", timeout=60)
    assert r.returncode == 0, r.stderr
    assert not [p for p in pids if psutil.pid_exists(p)]


def test_the_watcher_answers_while_it_spawns_many_workers(suite, root):
    """Spawning 256 workers takes a second or more on a busy machine; the watcher must not go silent
    for it (a client calls a watcher silent for local.watcher.calltimeout "not answering": the
    start-msg of 200 workers failed so on a loaded CI machine). STATUS asked meanwhile is answered
    while the start is under way: it shows some of the workers, not none and not all."""
    suite.configure(components=("imap",), **{"local.imap.command": SLEEP, "local.imap.ready": "started",
                                             "service.imap.numprocesses": "256"})
    proc = subprocess.Popen([command_path("start-msg")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    seen: set[int] = set()
    try:
        while proc.poll() is None:
            try:
                with WatcherClient.connect(root, timeout=5) as client:
                    while proc.poll() is None:
                        st = json.loads(client.request("STATUS"))
                        row = next(c for c in st["components"] if c["name"] == "imap")
                        if row["state"] == "STARTING":
                            seen.add(len(row["pids"]))
            except WatcherUnavailable:
                time.sleep(0.005)  # not listening yet
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [n for n in seen if 0 < n < 256], sorted(seen)
    assert len(running(suite, "imap")["pids"]) == 256
