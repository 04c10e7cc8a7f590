"""imsched as a real process: runs tasks on schedule, reloads on SIGHUP, never starts a task
twice, answers health probes, stops fast on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from msgsrv.config.store import ConfigStore
from tests.conftest import command_path, free_port, wait_for


def lines(path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def log(root) -> str:
    try:
        return root.default_log.read_text()
    except FileNotFoundError:
        return ""


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(100).startswith(b"* OK")
    except OSError:
        return False


@pytest.fixture
def imsched(root):
    procs = []

    def start(**settings):
        port = free_port()
        sets = {"local.schedule.msprobe.enable": "no", "local.sched.port": str(port)}
        sets.update(settings)
        ConfigStore(root.config_file).update(sets)
        p = subprocess.Popen([command_path("imsched")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, MSGSRV_BASE=str(root.base)))
        procs.append(p)
        wait_for(lambda: answers(port) or p.poll() is not None)
        assert p.poll() is None, p.stderr.read()
        p.port = port
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(5)


def test_seconds_schedule_runs_repeatedly_and_sighup_switches_it(root, imsched):
    a, b = root.base / "a.txt", root.base / "b.txt"
    p = imsched(**{"local.schedule.tick": "0.2 /bin/sh -c 'echo a >> a.txt'"})
    wait_for(lambda: len(lines(a)) >= 3)
    ConfigStore(root.config_file).update({"local.schedule.tick": "0.2 /bin/sh -c 'echo b >> b.txt'"})
    p.send_signal(signal.SIGHUP)
    wait_for(lambda: len(lines(b)) >= 2)
    n, m = len(lines(a)), len(lines(b))
    wait_for(lambda: len(lines(b)) >= m + 3)  # three more runs of the new schedule...
    assert len(lines(a)) == n  # ...and none of the old command: it is gone
    assert p.poll() is None  # reloaded, not restarted
    text = log(root)
    assert text.count("imsched Info: schedule loaded: ") == 2
    assert "imsched Info: task tick (pid " in text and "exited with status 0" in text


def test_schedule_of_two_seconds_runs_msprobe_repeatedly(root, imsched):
    p = imsched(**{"local.schedule.msprobe": "2 lib/msprobe -q sched", "local.schedule.msprobe.enable": "yes"})
    wait_for(lambda: log(root).count("task msprobe (pid") >= 2, timeout=15)
    text = log(root)
    assert text.count("task msprobe (pid") == text.count("exited with status 0") >= 2
    assert "msprobe Info: sched server response time" in text
    assert p.poll() is None


def test_running_task_is_not_started_twice(root, imsched):
    imsched(**{"local.schedule.slow": "0.2 /bin/sleep 1"})
    wait_for(lambda: "task slow is still running; not started again" in log(root))
    assert log(root).count("task slow started") == 1


def test_failing_task_status_is_logged(root, imsched):
    imsched(**{"local.schedule.bad": "0.2 /bin/sh -c 'echo boom; exit 3'"})
    wait_for(lambda: "exited with status 3: boom" in log(root))
    assert "imsched Warning: task bad (pid " in log(root)


def test_health_port_and_fault_switch(root, imsched, cli):
    p = imsched()
    with socket.create_connection(("127.0.0.1", p.port), timeout=2) as s:
        f = s.makefile("rwb")
        assert f.readline() == b"* OK imsched ready\r\n"
        f.write(b"PING\r\n")
        f.flush()
        assert f.readline() == b"+OK PONG\r\n"
    assert cli("msprobe", "sched").returncode == 0
    root.fault_file("sched").write_text("hang\n")
    ConfigStore(root.config_file).update({"local.probe.sched.timeout": "0.3"})
    r = cli("msprobe", "sched")
    assert r.returncode == 1
    assert "HUNG" in r.stdout and "sched server did not respond within 0.3s" in r.stderr


def test_sigterm_stops_quickly_even_with_a_running_task(root, imsched):
    p = imsched(**{"local.schedule.long": "0.1 /bin/sleep 30"})
    wait_for(lambda: "task long started" in log(root))
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    assert p.wait(5) == 0
    assert time.monotonic() - t0 < 2.0
    assert "imsched Info: imsched process" in log(root) and "exiting" in log(root)


def test_port_in_use_is_one_line_exit_1(root, cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = cli("imsched", "-p", str(s.getsockname()[1]))
    assert r.returncode == 1
    assert r.stderr.startswith("imsched: unable to listen on 127.0.0.1:") and r.stderr.count("\n") == 1


def test_list_shows_tasks_and_next_times(root, cli):
    ConfigStore(root.config_file).update({"local.schedule.purge": "0 3 * * * /bin/true"})
    r = cli("imsched", "--list")
    assert r.returncode == 0
    names = [ln.split("\t")[0] for ln in r.stdout.splitlines()]
    assert names == ["msprobe", "purge"]
