"""Issue 11, the watcher's part: commands never hang on the watcher, find it where it really listens,
and say what is true when it is disabled."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from msgsrv import messages as M
from msgsrv.watcher import portreserve
from tests.conftest import free_port
from tests.watcher.conftest import STORE, wait_for
from tests.watcher.test_issue_10 import root_processes


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_issue_11_a_watcher_that_does_not_answer_is_reported_and_stop_f_stops_everything(suite, cli):
    suite.configure(**{"local.watcher.calltimeout": "1"})
    assert cli("start-msg").returncode == 0
    w = suite.watcher_pid()
    servers = [p for c in STORE for p in suite.pids(c)]
    os.kill(w, signal.SIGSTOP)
    try:
        for cmd, args, tail in (("watcher", ["status"], ""), ("start-msg", [], ""),
                                ("stop-msg", [], " (stop-msg -f stops everything by pid)")):
            t0 = time.monotonic()
            r = cli(cmd, *args)
            assert (r.returncode, r.stderr) == (1, f"{cmd}: {M.NOT_ANSWERING.format(pid=w)}{tail}\n"), cmd
            assert time.monotonic() - t0 < 8, cmd  # a deadline (calltimeout 1 s), not a hang
        assert not gone(w) and all(not gone(p) for p in servers)  # nothing was done
        r = cli("stop-msg", "-f")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"Stopping watcher {w} (not answering) ... done\n")
        wait_for(lambda: gone(w) and all(gone(p) for p in servers))
        wait_for(lambda: root_processes(suite.base) == [])
    finally:
        if not gone(w):
            os.kill(w, signal.SIGCONT)


def test_issue_11_a_port_change_while_the_watcher_runs_does_not_strand_it(suite, cli, root):
    suite.configure()
    assert cli("start-msg").returncode == 0
    w = suite.watcher_pid()
    assert cli("configutil", "-o", "local.watcher.port", "-v", str(free_port())).returncode == 0
    r = cli("watcher", "status")
    assert r.returncode == 0 and r.stdout.startswith(f"watcher {w} ")
    r = cli("stop-msg")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == f"Stopping watcher {w} ... done"
    wait_for(lambda: gone(w))
    assert not (root.run_dir / "watcher.json").exists()  # a clean exit removes the run record


def test_issue_11_watcher_disabled(suite, cli):
    suite.configure(**{"local.watcher.enable": "no"})
    r = cli("start-msg", "ha")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"start-msg: {M.HA_NEEDS_WATCHER}\n")
    assert suite.pids("store") == []
    r = cli("start-msg")
    assert r.returncode == 0
    assert r.stderr == f"start-msg: {M.WATCHER_DISABLED}\n"  # one notice
    assert r.stdout.splitlines()[0].startswith("Starting store server")  # no watcher is contacted
    assert suite.pids("watcher") == []
    r = cli("watcher", "status")
    assert r.returncode == 0 and r.stderr == f"watcher: {M.STATUS_DISABLED}\n"
    assert [ln.split()[:3] for ln in r.stdout.splitlines()[2:]] == [[c, d, "RUNNING"] for c, d in (
        ("store", "stored"), ("imap", "imapd"), ("pop", "popd"), ("http", "mshttpd"))]
    imap = suite.pids("imap")[0]
    suite.kill(imap)
    wait_for(lambda: gone(imap))
    assert cli("watcher", "status").returncode == 3  # an enabled component does not run
    time.sleep(0.3)
    assert suite.pids("imap") == [imap]  # nobody restarts it, and the record is not rewritten
    r = cli("stop-msg")
    assert r.returncode == 0
    wait_for(lambda: root_processes(suite.base) == [])
    all_down = cli("watcher", "status", "--json")
    assert all_down.returncode == 3


def test_issue_11_reserve_port_dry_run_names_the_sysctl_value(suite, cli):
    suite.configure()
    r = cli("watcher", "reserve-port", "--dry-run")
    assert r.returncode == 0
    current = portreserve.RESERVED.read_text().strip()
    if suite.watcher_port in portreserve.reserved([suite.watcher_port], current):
        assert r.stdout == f"ports {suite.watcher_port} already reserved\n"
    else:
        assert r.stdout == (f"would write {portreserve.merged(current, [suite.watcher_port])} "
                            f"to {portreserve.RESERVED}\n")
    assert portreserve.RESERVED.read_text().strip() == current  # nothing changed


@pytest.mark.parametrize("current,ports,expected", [
    ("", [49994], "49994"),
    ("1000,2000-2005", [49994], "1000,2000-2005,49994"),
    ("49990-49993", [49994, 49995], "49990-49995"),
    ("49994", [49994], "49994"),
    ("50000,49994\n", [49995], "49994-49995,50000"),
])
def test_reserved_ports_are_merged_keeping_what_is_there(current, ports, expected):
    assert portreserve.merged(current, ports) == expected
