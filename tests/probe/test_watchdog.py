"""msprobe looks at the watcher itself (probe/watchdog.py): a watcher that died or hangs while
its servers run is launched again and adopts them; one stopped by a signal, one in HA mode, and
one with local.autorestart off are only reported; a stopped suite is left stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from msgsrv import procinfo
from tests.conftest import accepts
from tests.probe.test_e2e_watcher import Suite, wait_for
from tests.probe.test_e2e_watcher import suite as suite  # noqa: F401,PLC0414 (the fixture)

STORE = ("store", "imap", "pop", "http")


def pids(root, c: str) -> list[int]:
    try:
        return [d["pid"] for d in json.loads(root.pid_file(c).read_text())]
    except (OSError, ValueError):
        return []


def status(suite: Suite) -> dict:
    r = suite.cli("watcher", "status", "--json")
    assert r.returncode in (0, 3), r.stdout + r.stderr
    return json.loads(r.stdout)


def run_record(root) -> dict:
    return json.loads((root.run_dir / "watcher.json").read_text())


def kill_the_watcher(suite: Suite, root) -> int:
    old = run_record(root)["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not procinfo.same_process(old))
    return old


def watcher_line(out: str) -> list[str]:
    lines = [ln for ln in out.splitlines() if ln.startswith("watcher ")]
    assert len(lines) == 1, out
    return lines[0].split()


def test_a_dead_watcher_is_launched_again_and_adopts_every_server(suite, root):
    """Before, with the watcher killed, msprobe said every server was OK (exit 0) and nothing
    restarted anything until an admin ran start-msg."""
    suite.start()
    before = {c: pids(root, c) for c in STORE}
    old = kill_the_watcher(suite, root)
    r = suite.msprobe()
    assert r.returncode == 1, r.stdout + r.stderr
    assert watcher_line(r.stdout)[3] == "DOWN", r.stdout
    assert r.stderr.splitlines()[:2] == [
        f"msprobe: Error: watcher is not running: watcher process {old} ended unexpectedly; "
        "store imap pop http run unsupervised",
        f"msprobe: Error: watcher launched again (pid {run_record(root)['pid']}); it adopts the servers that run"], r.stderr
    st = status(suite)
    comps = {c["name"]: c for c in st["components"]}
    assert all(comps[c]["state"] == "RUNNING" and comps[c]["pids"] == before[c] and comps[c]["restarts"] == 0
               for c in STORE), comps
    assert f"watcher process {old} (previous) ended unexpectedly; adopting ..." in suite.watcher_log()
    new = run_record(root)["pid"]
    assert psutil.Process(new).ppid() != os.getpid()  # not msprobe's child: it lives on alone
    # supervised again: a crash is seen and healed at once
    os.kill(before["pop"][0], signal.SIGKILL)
    wait_for(lambda: (p := pids(root, "pop")) and p != before["pop"])
    r = suite.msprobe()
    assert r.returncode == 0, r.stdout + r.stderr
    assert watcher_line(r.stdout)[3] == "OK"
    assert "watcher response time" in suite.default_log()
    data = json.loads(suite.msprobe("--json", "watcher").stdout)
    assert data["healthy"] and data["services"] == [] and data["watcher"]["status"] == "OK"
    assert data["watcher"]["pid"] == new and data["watcher"]["relaunched"] is None


def test_a_watcher_that_does_not_answer_is_killed_and_launched_again(suite, root):
    """A watcher whose loop hangs holds its port and answers nothing: stood in for by a process
    that accepts on the control port and never answers, named by the run record."""
    suite.start(**{"local.probe.watcher.timeout": 0.5})
    before = {c: pids(root, c) for c in STORE}
    rec = run_record(root)
    kill_the_watcher(suite, root)
    hung = subprocess.Popen([sys.executable, "-c", (
        "import socket, time\n"
        f"s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {rec['port']}))\n"
        "s.listen(); print('ok', flush=True)\n"
        "conns = []\n"
        "while True: conns.append(s.accept())\n")], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert hung.stdout.readline() == "ok\n"
        (root.run_dir / "watcher.json").write_text(json.dumps(
            {**rec, "pid": hung.pid, "start_ticks": procinfo.start_ticks(hung.pid)}))
        t0 = time.monotonic()
        r = suite.msprobe()
        assert r.returncode == 1, r.stdout + r.stderr
        assert watcher_line(r.stdout)[3] == "HUNG", r.stdout
        assert "msprobe: Error: watcher did not respond within 0.5s" in r.stderr, r.stderr
        assert "msprobe: Error: watcher launched again (pid " in r.stderr, r.stderr
        assert hung.wait(timeout=10) == -signal.SIGKILL
        assert time.monotonic() - t0 < 15
    finally:
        if hung.poll() is None:
            hung.kill()
            hung.wait()
    comps = {c["name"]: c for c in status(suite)["components"]}
    assert all(comps[c]["state"] == "RUNNING" and comps[c]["pids"] == before[c] for c in STORE), comps


def test_a_watcher_stopped_by_a_signal_is_only_reported(suite, root):
    suite.start(**{"local.probe.watcher.timeout": 0.5})
    w = run_record(root)["pid"]
    os.kill(w, signal.SIGSTOP)
    try:
        r = suite.msprobe("watcher")
        assert r.returncode == 1
        assert r.stdout.split()[3] == "HUNG", r.stdout
        assert f"msprobe: Warning: watcher not launched again: watcher process {w} is stopped by a signal " \
               f"(kill -CONT {w} continues it)" in r.stderr, r.stderr
        assert procinfo.same_process(w)
    finally:
        os.kill(w, signal.SIGCONT)
    r = suite.msprobe("watcher")
    assert r.returncode == 0 and r.stdout.split()[3] == "OK", r.stdout + r.stderr
    assert r.stdout.count("\n") == 1  # the watcher alone: no service, no disk


@pytest.mark.parametrize("why", ["autorestart", "ha", "systemd", "another user's root"])
def test_a_dead_watcher_is_only_reported_where_someone_else_restarts_it(suite, root, why):
    suite.start(**({"local.autorestart": "no"} if why == "autorestart" else {}))
    old = kill_the_watcher(suite, root)
    if why in ("ha", "systemd"):  # as `start-msg ha` or a systemd unit would have left it
        rec = run_record(root)
        rec.update({"ha": True} if why == "ha" else {"manager": "systemd"})
        (root.run_dir / "watcher.json").write_text(json.dumps(rec))
    if why == "another user's root":
        if os.geteuid() != 0:
            pytest.skip("giving the root to another user needs root")
        os.chown(root.base, 4242, 4242)
    try:
        r = suite.msprobe()
    finally:
        if why == "another user's root":
            os.chown(root.base, 0, 0)
    assert r.returncode == 1
    reason = {"autorestart": "local.autorestart is off", "ha": "it runs in HA mode: the cluster manager decides",
              "systemd": "systemd started it and restarts it",
              "another user's root": f"{root.base} belongs to uid 4242: run msprobe as uid 4242"}[why]
    assert f"msprobe: Warning: watcher not launched again: {reason}" in r.stderr, r.stderr
    assert not procinfo.same_process(old) and suite.cli("watcher", "status").returncode == 1


def test_a_stopped_suite_is_left_stopped(suite, root):
    suite.start()
    suite.stop()
    r = suite.msprobe()
    assert r.returncode == 1
    assert watcher_line(r.stdout)[3] == "STOPPED", r.stdout
    assert "launched again" not in r.stderr
    assert suite.cli("watcher", "status").returncode == 1


def test_imsched_launches_the_watcher_again_outside_its_own_process_and_cgroup(suite, root):
    """The usual case: msprobe runs inside imsched (a server of the dead watcher). The watcher it
    launches must not be imsched's child, nor in imsched's cgroup (restarting imsched would then
    take it down), nor carry imsched's environment; and it supervises imsched like any server."""
    from msgsrv.watcher import cgroup

    suite.start(enable=("store", "imap", "pop", "http", "sched"),
                **{"local.schedule.msprobe": "1 lib/msprobe -q", "local.schedule.msprobe.enable": "yes"})
    sched = pids(root, "sched")
    old = kill_the_watcher(suite, root)
    wait_for(lambda: (rec := _live_record(root)) and rec["pid"] != old, timeout=20)
    new = run_record(root)["pid"]
    assert psutil.Process(new).ppid() not in sched
    env = psutil.Process(new).environ()
    assert "MSGSRV_COMPONENT" not in env and "MSGSRV_SUPERVISED" not in env
    if cgroup.of_pid(sched[0]) is not None:  # cgroups where the watcher may make them
        assert cgroup.of_pid(new) is None, cgroup.of_pid(new)
    comps = {c["name"]: c for c in status(suite)["components"]}
    assert comps["sched"]["pids"] == sched and comps["sched"]["state"] == "RUNNING"
    os.kill(sched[0], signal.SIGKILL)  # imsched restarted by the watcher it launched
    wait_for(lambda: (p := pids(root, "sched")) and p != sched)
    assert procinfo.same_process(new)
    assert "watcher launched again (pid" in suite.default_log()


def _live_record(root) -> dict | None:
    try:
        rec = run_record(root)
    except (OSError, ValueError):
        return None
    return rec if procinfo.recorded(rec) and accepts(rec["port"]) else None


def test_imsched_sees_the_watcher_die_at_once_and_launches_it_again(suite, root):
    """imsched holds a registration with the watcher; the watcher closes it only after stopping
    imsched, so a close while imsched runs is the watcher's death. Before, the servers then ran
    unsupervised until the next msprobe pass (every 10 minutes by default); imsched now looks at
    the watcher a second later and launches it again, and registers with the new one, so the next
    death is seen at once too. (No msprobe pass is scheduled here: only the registration can tell.)"""
    suite.start(enable=("store", "imap", "pop", "http", "sched"))
    before = {c: pids(root, c) for c in (*STORE, "sched")}
    for _ in range(2):
        old = kill_the_watcher(suite, root)
        t0 = time.monotonic()
        wait_for(lambda old=old: (rec := _live_record(root)) and rec["pid"] != old, timeout=20)
        took = time.monotonic() - t0
        assert took < 10, took  # a second's grace, then a watcher's start: not a probe interval
        wait_for(lambda: all(c["state"] == "RUNNING" for c in status(suite)["components"] if c["enabled"]))
        comps = {c["name"]: c for c in status(suite)["components"]}
        assert {c: comps[c]["pids"] for c in before} == before and all(comps[c]["restarts"] == 0 for c in before)
    log = suite.default_log()
    assert log.count("imsched Error: the watcher's connection closed; looking at the watcher") == 2, log
    assert log.count("imsched Error: watcher launched again (pid ") == 2
    assert "task msprobe" not in log
