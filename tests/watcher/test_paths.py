"""The watcher paths issue 10 lists as untested, each end to end with real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time

import psutil

from msgsrv import messages as M
from msgsrv.watcher.journal import read as journal
from tests.conftest import command_path
from tests.watcher.conftest import wait_for
from tests.watcher.test_issue_10 import all_running, new_pids

RESTART_STORE = M.RECEIVED_RESTART.format(units="store imap pop http")


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_sigterm_ignored_is_escalated_to_sigkill(suite, cli):
    suite.configure(args={"http": "--ignore-term"}, **{"local.http.stoptimeout": "0.5"})
    assert cli("start-msg").returncode == 0
    pid = suite.pids("http")[0]
    t0 = time.monotonic()
    r = cli("stop-msg", "http")
    assert r.returncode == 0
    assert re.fullmatch(rf"Stopping http server {pid} \.{{8,}} done", r.stdout.splitlines()[0])  # ~0.5 s of dots
    assert time.monotonic() - t0 < 5
    assert gone(pid)
    assert suite.status()["http"]["state"] == "STOPPED"


def test_a_member_failing_to_come_back_in_a_group_restart_is_retried_then_fatal(suite, cli):
    suite.configure(**{"local.autorestart.timeout": "600"})
    assert cli("start-msg").returncode == 0
    assert cli("configutil", "-o", "local.http.command", "-v", "sh -c 'echo http cannot start >&2; exit 3'"
               ).returncode == 0
    suite.kill(suite.pids("imap")[0])
    wait_for(lambda: "giving up" in suite.log(), timeout=30)
    assert M.GIVING_UP.format(c="http", n=3, units="store imap pop http", window=600) in suite.log_lines()
    assert suite.log().count("Received request to restart") == 2
    st = all_running(suite, ("store", "imap", "pop"))
    assert st["http"]["state"] == "FATAL" and st["http"]["last_exit"]["status"] == 3


def test_registration_dropped_without_bye_while_alive_is_a_failure(suite, cli):
    suite.configure(args={"http": "--drop-registration 0.5"}, **{"local.autorestart.timeout": "600"})
    assert cli("start-msg").returncode == 0
    first = suite.pids("http")[0]
    line = M.WATCHED_DISCONNECTED.format(daemon="mshttpd", pid=first)
    wait_for(lambda: line in suite.log(), timeout=10)
    new_pids(suite, "http", [first])
    # it was alive when the watcher judged it (a disconnect, not an exit), and the restart stopped it
    kinds = [r["kind"] for r in journal(suite.root) if r["pid"] == first and r["kind"] in ("disconnect", "exit")]
    assert kinds == ["disconnect"]
    assert RESTART_STORE in suite.log_lines()[suite.log_lines().index(line):]


def test_two_failures_are_merged_into_one_restart(suite, cli):
    suite.configure(**{"local.autorestart.timeout": "600"})
    assert cli("start-msg").returncode == 0
    imap, pop = suite.pids("imap")[0], suite.pids("pop")[1]
    # both dead before the watcher sees either: on a loaded machine the test could otherwise be
    # descheduled between the kills, and the restart for pop would already be stopping imap when
    # imap's kill lands (an expected stop then, not a second failure: nothing to merge)
    watcher = suite.watcher_pid()
    suite.kill(watcher, signal.SIGSTOP)
    try:
        suite.kill(pop)
        suite.kill(imap)
        wait_for(lambda: not psutil.pid_exists(pop) or psutil.Process(pop).status() == psutil.STATUS_ZOMBIE)
        wait_for(lambda: not psutil.pid_exists(imap) or psutil.Process(imap).status() == psutil.STATUS_ZOMBIE)
    finally:
        suite.kill(watcher, signal.SIGCONT)
    wait_for(lambda: suite.log().count("Starting http server") == 2, timeout=15)
    st = all_running(suite)
    time.sleep(0.3)
    assert suite.log().count("Received request to restart") == 1
    assert st["imap"]["restarts"] == 1
    kinds = [r["kind"] for r in journal(suite.root)]
    assert kinds.count("restart-queued") == 1 and kinds.count("restart-merged") == 1


def test_a_command_that_cannot_run_is_a_start_failure_counted_and_given_up(suite, cli):
    suite.configure(**{"local.http.command": "/nonexistent/mshttpd --foreground", "local.autorestart.timeout": "600"})
    r = cli("start-msg")
    assert r.returncode == 1
    assert r.stderr == "start-msg: http: unable to run /nonexistent/mshttpd: no such file or directory\n"
    wait_for(lambda: "giving up" in suite.log(), timeout=30)
    st = all_running(suite, ("store", "imap", "pop"))
    assert st["http"]["state"] == "FATAL" and st["http"]["pids"] == []
    assert "unable to run /nonexistent/mshttpd" in st["http"]["reason"] or "giving up" in st["http"]["reason"]


def test_adoption_skips_a_stale_and_a_recycled_pid(suite, cli, root):
    suite.configure()
    assert cli("start-msg").returncode == 0
    w = suite.watcher_pid()
    suite.kill(w)
    wait_for(lambda: gone(w))
    http = suite.pids("http")[0]
    suite.kill(http)  # dies while no watcher runs: a stale pid file
    wait_for(lambda: gone(http))
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        # the pop record now names an unrelated process: a recycled pid (its start time differs)
        recs = json.loads(root.pid_file("pop").read_text())
        recs[0]["pid"] = stranger.pid
        root.pid_file("pop").write_text(json.dumps(recs))
        r = cli("start-msg")
        assert r.returncode == 0, r.stderr
        st = all_running(suite)
        assert stranger.pid not in st["pop"]["pids"] and psutil.pid_exists(stranger.pid)
        assert http not in st["http"]["pids"]
        assert M.WATCHED_EXITED.format(daemon="mshttpd", pid=http) in suite.log_lines()  # never lost
        assert cli("stop-msg").returncode == 0
        assert stranger.poll() is None  # never signalled
    finally:
        stranger.kill()
        stranger.wait()


def test_a_second_watcher_is_refused(suite, cli):
    suite.configure()
    assert cli("start-msg").returncode == 0
    r = cli("watcher")
    assert r.returncode == 1
    assert r.stderr == f"watcher: a watcher is already running (pid {suite.watcher_pid()})\n"


def test_the_control_port_already_in_use_is_retried_then_names_the_holder(suite, cli, root):
    suite.configure()
    holder = socket.socket()
    holder.bind(("127.0.0.1", suite.watcher_port))
    holder.listen()
    me = f"pid {os.getpid()} ({psutil.Process().name()})"
    t0 = time.monotonic()
    try:
        r = cli("start-msg")
    finally:
        holder.close()
    assert r.returncode == 1
    assert time.monotonic() - t0 >= 4.5  # retried for a while (an ephemeral holder may go away)
    assert f"port {suite.watcher_port} is in use by {me}" in r.stderr
    assert "net.ipv4.ip_local_reserved_ports" in r.stderr
    console = (root.log_dir / "console").read_text()
    assert M.LISTEN_RETRY.format(port=suite.watcher_port, why=f"port {suite.watcher_port} is in use by {me}",
                                 seconds=5) in console


def test_the_control_port_freed_while_retrying_is_taken(suite, cli):
    suite.configure()
    holder = socket.socket()
    holder.bind(("127.0.0.1", suite.watcher_port))
    holder.listen()
    w = subprocess.Popen([command_path("start-msg")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    holder.close()
    out, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    all_running(suite)


def test_a_request_queued_behind_a_restart_waits_without_timing_out(suite, cli):
    # STYLE §4.5: queued, never refused for being busy; keepalives keep the 1 s deadline from firing
    suite.configure(**{"local.watcher.calltimeout": "1"})
    assert cli("start-msg").returncode == 0
    slow_store(suite, cli, 2.5)
    suite.kill(suite.pids("imap")[0])
    wait_for(lambda: RESTART_STORE in suite.log())
    t0 = time.monotonic()
    r = cli("start-msg", "imap")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 > 1.5  # it waited for the restart to finish
    assert r.stdout.splitlines() == [M.CONNECTING, M.ALREADY_RUNNING.format(c="imap")]


def test_sigterm_preempts_a_restart_under_way(suite, cli):
    suite.configure()
    assert cli("start-msg").returncode == 0
    slow_store(suite, cli, 5)
    w = suite.watcher_pid()
    suite.kill(suite.pids("http")[0])
    wait_for(lambda: suite.log().count("Starting store server") == 2)  # the restart waits on a slow store
    t0 = time.monotonic()
    os.kill(w, 15)
    wait_for(lambda: gone(w), timeout=10)
    assert time.monotonic() - t0 < 4  # not after the 5 s store start and the rest of the restart
    assert M.WATCHER_EXITING.format(pid=w) in suite.log_lines()
    from tests.watcher.test_issue_10 import root_processes

    wait_for(lambda: root_processes(suite.base) == [], timeout=10)


def test_a_restart_preempted_mid_line_ends_its_line_in_the_log(suite, cli):
    """SIGTERM while the restart waits for a slow store: the log's `Starting store server ...`
    line is completed with `interrupted`, not lost with the rest of the restart."""
    suite.configure()
    assert cli("start-msg").returncode == 0
    slow_store(suite, cli, 5)
    w, old = suite.watcher_pid(), suite.pids("store")
    suite.kill(suite.pids("http")[0])
    wait_for(lambda: (p := suite.pids("store")) and p != old)  # the new store spawned, not yet ready
    os.kill(w, 15)
    wait_for(lambda: gone(w), timeout=10)
    lines = suite.log_lines()
    assert [ln for ln in lines if ln.startswith("Starting store server ")][-1].endswith(" interrupted"), lines
    assert M.WATCHER_EXITING.format(pid=w) in lines


def slow_store(suite, cli, seconds: float) -> None:
    """From now on the store takes SECONDS to start (its next start is in a restart)."""
    command = cli("configutil", "-o", "local.store.command").stdout.strip()
    assert cli("configutil", "-o", "local.store.command", "-v", f"{command} --delay {seconds}").returncode == 0


def test_a_reader_that_goes_away_is_not_a_lost_watcher(suite, cli):
    """`start-msg | head -1`: the closed pipe is start-msg's own output, not its watcher connection,
    so it does not say "lost the watcher connection"; the watcher finishes the start all the same."""
    suite.configure()
    assert cli("start-msg").returncode == 0
    assert cli("stop-msg", "http").returncode == 0  # the watcher stays: start-msg's lines are its progress
    p = subprocess.Popen([command_path("start-msg")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith("Connecting to watcher")
    p.stdout.close()  # like head: one line read, then gone
    _, err = p.communicate(timeout=60)
    assert "lost the watcher connection" not in err and "Traceback" not in err
    wait_for(lambda: all(c["state"] == "RUNNING" for c in suite.status().values() if c["enabled"]), timeout=20)
