"""imsched as a real process: runs tasks on schedule, reloads on SIGHUP, never starts a task
twice, answers health probes, stops fast on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import psutil
import pytest

from msgsrv.config.store import ConfigStore
from msgsrv.probe.history import History
from tests.conftest import command_path, free_port, slow_import_path, wait_for
from tests.probe.probe_fakes import FakeServers


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

    def start(env: dict | None = None, **settings):
        port = free_port()
        sets = {"local.schedule.msprobe.enable": "no", "local.sched.port": str(port)}
        sets.update(settings)
        ConfigStore(root.config_file).update(sets)
        p = subprocess.Popen([command_path("imsched")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, MSGSRV_BASE=str(root.base), **(env or {})))
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
    # at start, then on the change: the SIGHUP, and the loop's own look at config/msg.toml when it
    # saw the new file before the signal came (both reload; neither restarts)
    assert text.count("imsched Info: schedule loaded: ") in (2, 3)
    assert "imsched Info: task tick (pid " in text and "exited with status 0" in text


def test_schedule_of_two_seconds_runs_msprobe_repeatedly_in_process(root, imsched):
    p = imsched(**{"local.schedule.msprobe": "2 lib/msprobe -q sched", "local.schedule.msprobe.enable": "yes"})
    wait_for(lambda: log(root).count("task msprobe (in-process) exited") >= 2, timeout=15)
    text = log(root)
    assert "imsched Info: task msprobe started: lib/msprobe -q sched (in-process)" in text
    assert text.count("task msprobe (in-process) exited with status 0") >= 2
    assert "msprobe Info: sched server response time" in text
    assert "task msprobe (pid" not in text  # no process per pass
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


# -- issue 14: msprobe in-process -------------------------------------------------------------
def msprobe_lines(text: str) -> list[str]:
    """The msprobe lines of a log, without stamps and figures: what a pass wrote, in shape."""
    out = []
    for ln in text.splitlines():
        body = ln.split("] ", 1)[-1]
        if body.startswith("msprobe "):
            out.append(re.sub(r"\d+(\.\d+)?", "N", body))
    return out


@pytest.fixture
def fakes():
    with FakeServers() as fs:
        yield fs


def test_in_process_pass_writes_what_the_msprobe_command_writes(root, imsched, cli, fakes):
    """Same log lines, same history, same restart-request path: a hung store and a healthy imap,
    autorestart on, no watcher listening (the request fails the same way for both)."""
    settings = {"local.store.port": str(fakes.start("hang")), "service.imap.port": str(fakes.start("imap")),
                "local.probe.store.timeout": "0.3", "local.autorestart": "yes",
                "local.watcher.port": str(free_port()), "alarm.serverresponse.msgalarmstatinterval": "0"}
    ConfigStore(root.config_file).update(settings)
    r = cli("msprobe", "store", "imap")
    assert r.returncode == 1
    spawned = msprobe_lines(log(root))
    root.default_log.unlink()
    p = imsched(**{"local.schedule.msprobe": "1 lib/msprobe store imap", "local.schedule.msprobe.enable": "yes",
                   **settings})
    text = wait_for(lambda: "task msprobe (in-process) exited" in log(root) and log(root), timeout=15)
    text = text.split("task msprobe (in-process) exited", 1)[0] + "task msprobe (in-process) exited" + \
        text.split("task msprobe (in-process) exited", 1)[1].split("\n", 1)[0]  # the first pass only
    p.send_signal(signal.SIGSTOP)  # no second pass while the history is counted
    assert msprobe_lines(text) == spawned
    assert "requesting restart of store imap pop http" in text and "unable to request restart of" in text
    assert "task msprobe (in-process) exited with status 1: msprobe: Error: store server did not respond" in text
    h = History(root.history_db)
    assert [s.count for s in h.summaries(["store", "imap"])] == [2, 2]  # one sample from each pass
    p.send_signal(signal.SIGCONT)
    assert p.poll() is None


def test_other_commands_and_options_are_still_spawned(root, imsched):
    imsched(**{"local.schedule.msprobe": "0.5 lib/msprobe --history", "local.schedule.msprobe.enable": "yes",
               "local.schedule.probe2": "0.5 lib/msprobe -q sched"})
    wait_for(lambda: "task msprobe (pid" in log(root) and "task probe2 (in-process) exited" in log(root),
             timeout=15)


def test_a_pass_still_running_when_the_next_is_due_is_logged_and_not_started(root, imsched, fakes):
    imsched(**{"local.store.port": str(fakes.start("hang")), "local.probe.store.timeout": "1.5",
               "local.schedule.msprobe": "0.3 lib/msprobe -q store", "local.schedule.msprobe.enable": "yes"})
    text = wait_for(lambda: "task msprobe (in-process) exited" in log(root) and log(root), timeout=15)
    first = text.split("task msprobe (in-process) exited", 1)[0]
    assert "imsched Warning: task msprobe is still running; not started again" in first
    assert first.count("task msprobe started") == 1


def test_a_hung_pass_does_not_block_the_health_port(root, imsched, fakes):
    p = imsched(**{"local.store.port": str(fakes.start("hang")), "local.probe.store.timeout": "5",
                   "local.schedule.msprobe": "0.2 lib/msprobe -q store", "local.schedule.msprobe.enable": "yes"})
    wait_for(lambda: "task msprobe started" in log(root))
    t0 = time.monotonic()
    assert answers(p.port)
    assert time.monotonic() - t0 < 1.0


def test_msprobe_every_second_spawns_no_process(root, imsched):
    p = imsched(**{"local.schedule.msprobe": "0.2 lib/msprobe -q sched", "local.schedule.msprobe.enable": "yes"})
    me = psutil.Process(p.pid)
    end = time.monotonic() + 10.0  # 5 passes take 1 s; a loaded machine may take longer, never a child
    while log(root).count("task msprobe (in-process) exited with status 0") < 5:
        assert me.children() == []
        assert time.monotonic() < end, log(root)
        time.sleep(0.01)
    assert me.children() == []


def test_bare_seconds_msprobe_schedule_runs_lib_msprobe(root, imsched):
    imsched(**{"local.schedule.msprobe": "1", "local.schedule.msprobe.enable": "yes",
               "local.autorestart.timeout": "600"})
    wait_for(lambda: "task msprobe started: lib/msprobe (in-process)" in log(root), timeout=10)


# -- issue 11: a change of the config file is noticed without SIGHUP ---------------------------
def test_config_change_is_noticed_without_sighup(root, imsched, cli):
    a = root.base / "a.txt"
    p = imsched()
    r = cli("configutil", "-o", "local.schedule.tick", "-v", "0.2 /bin/sh -c 'echo a >> a.txt'")
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    wait_for(lambda: lines(a), timeout=5)
    assert time.monotonic() - t0 < 2.5  # one look a second, then the first run 0.2 s later
    assert "imsched Info: configuration changed; reloading the schedule" in log(root)
    assert p.poll() is None


def test_config_change_through_a_symlinked_store_is_noticed(root, imsched, tmp_path):
    a = root.base / "a.txt"
    imsched()
    target = tmp_path / "repo" / "msg.toml"
    target.parent.mkdir()
    target.write_text(root.config_file.read_text())
    root.config_file.unlink()
    root.config_file.symlink_to(target)
    ConfigStore(root.config_file).update({"local.schedule.tick": "0.2 /bin/sh -c 'echo a >> a.txt'"})
    wait_for(lambda: lines(a), timeout=5)


def faketime_env(offset_file) -> dict:
    """The environment under which libfaketime (Debian package faketime) moves the wall clock by
    what OFFSET_FILE says, read again at every call; the monotonic clock stays true."""
    import glob

    lib = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)
    if lib is None:
        pytest.skip("libfaketime not installed (Debian package faketime; scripts/ci-deps.sh installs it)")
    return {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(offset_file), "FAKETIME_NO_CACHE": "1",
            "DONT_FAKE_MONOTONIC": "1"}


@pytest.mark.integration  # libfaketime: under CI=true it must be there
@pytest.mark.parametrize("step", ["-1h", "+2h"])
def test_a_clock_step_does_not_stop_the_schedule(root, imsched, step):
    """The wall clock steps (NTP correcting a clock after boot, a VM resumed, an admin's `date -s`).
    Back an hour: before, every task waited for its old next time, an hour away, and msprobe did not
    run for that hour. Now the step is noticed (the wall clock against the monotonic one), logged,
    and every next time is computed again from the new now. Forward: no burst of missed runs."""
    offset = root.base / "clock-offset"
    offset.write_text("+0\n")
    a = root.base / "a.txt"
    imsched(env=faketime_env(offset), **{"local.schedule.tick": "1 /bin/sh -c 'echo a >> a.txt'"})
    wait_for(lambda: len(lines(a)) >= 2, timeout=10)
    offset.write_text(step + "\n")
    n = len(lines(a))
    wait_for(lambda: len(lines(a)) >= n + 3, timeout=10)
    assert len(lines(a)) <= n + 5  # about one a second, not a catch-up of the skipped hours
    assert f"imsched Warning: the clock stepped {'back' if step[0] == '-' else 'forward'} by " in log(root)


def test_imsched_registers_before_its_schedule_imports_croniter(root, tmp_path):
    """imsched is the last server of a suite's start, which waits for its REGISTER; the
    schedule's first load imports croniter, which the loop cannot interrupt. The REGISTER goes
    out first (here croniter's import takes 3 s: the REGISTER comes well before)."""
    root.ensure()
    root.token_file.write_text("t0ken\n")
    watcher = socket.create_server(("127.0.0.1", 0))
    port = free_port()
    ConfigStore(root.config_file).update({"local.sched.port": str(port)})
    env = dict(os.environ, MSGSRV_BASE=str(root.base), MSGSRV_SUPERVISED="1",
               MSGSRV_WATCHER_PORT=str(watcher.getsockname()[1]),
               PYTHONPATH=slow_import_path(tmp_path / "shim", "croniter", 3))
    t0 = time.monotonic()
    p = subprocess.Popen([command_path("imsched")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        watcher.settimeout(10)
        conn, _ = watcher.accept()
        conn.settimeout(10)
        got = b""
        while b"REGISTER" not in got:
            got += conn.recv(1000)
        registered = time.monotonic() - t0
        conn.sendall(b"OK\nOK\n")
        assert b"REGISTER sched %d" % p.pid in got
        assert registered < 2.5, f"REGISTER after {registered:.2f} s"
        # and the schedule does load once croniter is there
        wait_for(lambda: "schedule loaded" in log(root), timeout=30)
        assert p.poll() is None
        conn.close()
    finally:
        p.terminate()
        p.wait(10)
        watcher.close()
