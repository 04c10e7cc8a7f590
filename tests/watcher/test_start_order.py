"""A start of several components: dependencies first, the rest together, lines in start order.

The watcher "is aware of any dependencies the other services have, and in which sequence the
services should be started" (the manuals): a component starts once the ones it comes after
(components.py, `after`) have been started; components that do not wait for each other start
together; start-msg and the watcher log show their lines in start order all the same. Real
processes (fakesrv.py stand-ins that listen only after --delay), the real commands.
"""

from __future__ import annotations

import time

import psutil

from msgsrv.components import BY_NAME, START_ORDER

DELAY = "--delay 0.6"  # seconds a stand-in waits before it listens (readiness: its port accepts)


def started_at(suite, c: str) -> float:
    return min(psutil.Process(p).create_time() for p in suite.pids(c))


def starting_lines(text: str) -> list[str]:
    return [ln.split(" server")[0] for ln in text.splitlines() if ln.startswith("Starting ")]


def test_components_that_wait_for_nothing_start_together(suite, cli):
    """imap and pop come after the store only: without it in the start they do not wait for each
    other. One after the other they would be spawned 0.6 s apart (each listens after 0.6 s)."""
    suite.configure(components=("imap", "pop"), args={"imap": DELAY, "pop": DELAY})
    r = cli("start-msg", timeout=60)
    assert r.returncode == 0, r.stderr
    assert abs(started_at(suite, "imap") - started_at(suite, "pop")) < 0.3
    assert starting_lines(r.stdout) == ["Starting imap", "Starting pop"]
    # each line whole, with its own pids, as from a start of one after the other
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("Starting ")]
    assert lines[0].endswith(" ".join(map(str, suite.pids("imap"))))
    assert lines[1].endswith(" ".join(map(str, suite.pids("pop"))))
    assert [ln for ln in suite.log_lines() if ln.startswith("Starting ")] == lines


def test_the_store_is_up_before_its_clients_are_spawned(suite, cli):
    suite.configure(components=("store", "imap", "pop"), args={"store": DELAY, "imap": DELAY, "pop": DELAY})
    r = cli("start-msg", timeout=60)
    assert r.returncode == 0, r.stderr
    store, imap, pop = (started_at(suite, c) for c in ("store", "imap", "pop"))
    assert imap - store >= 0.5 and pop - store >= 0.5  # the store accepted first (after its 0.6 s)
    assert abs(imap - pop) < 0.3  # then both together
    assert starting_lines(r.stdout) == ["Starting store", "Starting imap", "Starting pop"]


def test_ens_and_the_store_start_together_and_the_dispatcher_after_both(suite, cli):
    """The store needs nothing started before it; the dispatcher publishes to ens and delivers into
    the store, so it waits for both."""
    suite.configure(components=("ens", "store", "dispatcher"),
                    args={"ens": DELAY, "store": DELAY, "dispatcher": DELAY})
    r = cli("start-msg", timeout=60)
    assert r.returncode == 0, r.stderr
    ens, store, dispatcher = (started_at(suite, c) for c in ("ens", "store", "dispatcher"))
    assert abs(ens - store) < 0.3
    assert dispatcher - ens >= 0.5 and dispatcher - store >= 0.5
    assert starting_lines(r.stdout) == ["Starting ens", "Starting store", "Starting dispatcher",
                                        "Starting job_controller"]


def test_a_failed_dependency_does_not_keep_the_others_down(suite, cli):
    """As a start one after the other never did: the store fails, imap and pop start anyway, and
    start-msg names the failure."""
    suite.configure(components=("store", "imap", "pop"), **{"local.store.command": "sh -c 'exit 3'",
                                                            "local.autorestart": "no"})
    r = cli("start-msg", timeout=60)
    assert r.returncode != 0 and r.stderr.strip() == "start-msg: store: exited with status 3"
    st = suite.status()
    assert st["store"]["state"] != "RUNNING" and not st["store"]["pids"]
    assert st["imap"]["state"] == st["pop"]["state"] == "RUNNING"
    assert all(psutil.pid_exists(p) for p in st["imap"]["pids"] + st["pop"]["pids"])
    assert starting_lines(r.stdout) == ["Starting store", "Starting imap", "Starting pop"]


def test_every_dependency_comes_earlier_in_the_start_order():
    """`after` never names a later component (the lines are shown in start order, and a start in
    order must stay possible), nor an unknown one."""
    for c in START_ORDER:
        for d in BY_NAME[c].after:
            assert START_ORDER.index(d) < START_ORDER.index(c), (c, d)


def test_a_watcher_killed_during_a_start_leaves_a_start_to_finish_not_failures(suite, cli, root):
    """The worst moment: the watcher dies after the admin's start was accepted, while the store
    is starting and imap and pop wait for it. Nothing of imap and pop has run, so nothing has
    failed: the next watcher finishes the start (no restart, no made-up exit, the budget intact),
    and adopts the store that was already running."""
    import json
    import os
    import signal
    import subprocess

    from msgsrv import messages as M
    from tests.watcher.conftest import command_path, wait_for

    suite.configure(components=("store", "imap", "pop"), args={"store": "--delay 3"},
                    **{"local.autorestart.timeout": "600"})
    first = subprocess.Popen([command_path("start-msg")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        state = root.run_dir / "supervision.json"

        def waiting() -> bool:  # the store spawned, imap and pop wanted but not yet started (saved)
            try:
                comps = json.loads(state.read_text())["components"]
            except (OSError, ValueError, KeyError):
                return False
            return bool(suite.pids("store")) and all(comps[c]["start_pending"] for c in ("imap", "pop"))

        wait_for(waiting, timeout=20)
        store = suite.pids("store")
        dead = suite.watcher_pid()
        os.kill(dead, signal.SIGKILL)
        assert first.wait(timeout=20) != 0  # its watcher went away under it
    finally:
        if first.poll() is None:
            first.kill()
    r = cli("start-msg", timeout=60)
    assert r.returncode == 0, r.stderr
    st = wait_for(lambda: (s := suite.status()) and all(s[c]["state"] == "RUNNING" for c in ("store", "imap", "pop"))
                  and s, timeout=20)
    assert st["store"]["pids"] == store  # adopted, not restarted
    for c in ("store", "imap", "pop"):
        assert st[c]["restarts"] == 0 and st[c]["last_exit"] is None, st[c]
    lines = suite.log_lines()
    assert M.PREVIOUS_DIED.format(pid=dead) in lines
    assert M.START_RESUMED.format(names="imap pop") in lines
    assert M.NOT_RUNNING.format(c="imap") not in lines and "Received request to restart" not in suite.log()


def test_a_start_preempted_by_the_watchers_shutdown_ends_every_line_it_began(suite, cli, root):
    """SIGTERM to the watcher (what systemd's stop sends) while a start waits for the store: the
    start is preempted, and the lines it had begun (start-msg's and the watcher log's) end with
    `interrupted`, one to a line, not run together; nothing is left running."""
    import os
    import signal
    import subprocess

    from tests.watcher.conftest import command_path, wait_for

    suite.configure(components=("store", "imap", "pop"), args={"store": "--delay 5"})
    first = subprocess.Popen([command_path("start-msg")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: suite.pids("store"), timeout=20)
        os.kill(suite.watcher_pid(), signal.SIGTERM)
        out, err = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode != 0, out + err
    begun = [ln for ln in out.splitlines() if ln.startswith("Starting ")]
    assert begun == [ln for ln in begun if ln.count("Starting ") == 1], out
    assert begun and begun[0].startswith("Starting store server ") and begun[0].endswith(" interrupted"), out
    assert [ln for ln in suite.log_lines() if ln.startswith("Starting store server ")] == [begun[0]]
    assert wait_for(lambda: not [c for c in ("store", "imap", "pop") if suite.pids(c)], timeout=20)


def test_a_watcher_killed_during_a_stop_has_that_stop_finished_not_a_failure(suite, cli, root):
    """The admin's stop-msg, and the watcher dies while imap takes its time to exit after SIGTERM.
    The next watcher finds imap (and the store, not yet stopped) alive but not meant to run: it
    finishes that stop (`resuming the stop ...`), so imap's exit is the stop's, not a crash; then
    the admin's start-msg starts everything again, with no restart counted."""
    import os
    import signal
    import subprocess

    from msgsrv import messages as M
    from tests.watcher.conftest import command_path, wait_for

    suite.configure(components=("store", "imap", "pop"), args={"imap": "--slow-term 2"})
    assert cli("start-msg").returncode == 0
    old_imap = suite.pids("imap")
    stop = subprocess.Popen([command_path("stop-msg")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: not suite.pids("pop"), timeout=20)  # pop stopped: imap's SIGTERM is next
        time.sleep(0.3)  # imap has its SIGTERM and is taking its 2 s
        assert suite.pids("imap") == old_imap
        os.kill(suite.watcher_pid(), signal.SIGKILL)
        stop.wait(timeout=20)
    finally:
        if stop.poll() is None:
            stop.kill()
    r = cli("start-msg", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    st = wait_for(lambda: (s := suite.status()) and all(s[c]["state"] == "RUNNING" for c in ("store", "imap", "pop"))
                  and s, timeout=20)
    time.sleep(2.5)  # past the old imap's exit
    st = suite.status()
    for c in ("store", "imap", "pop"):
        assert st[c]["state"] == "RUNNING" and st[c]["restarts"] == 0 and st[c]["last_exit"] is None, st[c]
    assert st["imap"]["pids"] != old_imap
    assert M.STOP_RESUMED.format(names="store imap") in suite.log_lines(), suite.log_lines()


def test_stop_msg_does_not_wait_behind_a_slow_start(suite, cli, root):
    """start-msg waits for an imapd that takes a minute to listen; the admin gives up and runs
    stop-msg. Its shutdown interrupts that start at once (not after the minute): imap's line ends
    `interrupted`, start-msg says why and exits 1, the lines of what had started are all shown
    (held ones too), stop-msg stops everything that runs by then, nothing is left, and no failure
    is counted."""
    import subprocess

    from msgsrv import messages as M
    from tests.watcher.conftest import command_path, wait_for

    suite.configure(args={"imap": "--delay 60"}, **{"local.imap.starttimeout": "90"})
    start = subprocess.Popen([command_path("start-msg")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: suite.pids("imap") and suite.pids("http"), timeout=20)  # imap spawned, still silent
        stop = cli("stop-msg", timeout=30)
        out, err = start.communicate(timeout=10)
    finally:
        if start.poll() is None:
            start.kill()
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert start.returncode == 1
    assert err.startswith("start-msg: " + M.SHUTTING_DOWN.format(by=" (asked by stop-msg[")), err
    begun = [ln for ln in out.splitlines() if ln.startswith("Starting ")]
    assert [ln.split(" server")[0] for ln in begun] == ["Starting store", "Starting imap", "Starting pop",
                                                        "Starting http"], out
    assert begun[1].endswith(" interrupted") and not begun[2].endswith(" interrupted"), out
    stopped = [ln.split()[1] for ln in stop.stdout.splitlines() if ln.startswith("Stopping ")]
    assert list(dict.fromkeys(stopped)) == ["http", "pop", "imap", "store", "watcher"], stop.stdout  # pop: 4 workers
    assert wait_for(lambda: not [c for c in STORE_MEMBERS if suite.pids(c)], timeout=10)
    journal = (root.run_dir / "journal.jsonl").read_text()
    assert '"kind":"exit"' not in journal and '"kind":"restart-queued"' not in journal


def test_a_stop_of_everything_drops_the_starts_queued_before_it(suite, cli, root):
    """STOP with no component on the control port (the watcher stays up): a slow start of the
    store and imap, `start-msg pop` queued behind it: both starts are answered why, pop is never
    started, everything is STOPPED and nothing runs."""
    import subprocess

    from msgsrv import messages as M
    from msgsrv.control.client import WatcherClient
    from tests.watcher.conftest import command_path, wait_for

    suite.configure(args={"imap": "--delay 60"}, **{"local.imap.starttimeout": "90"})
    first = subprocess.Popen([command_path("start-msg"), "store", "imap"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    queued = None
    try:
        wait_for(lambda: suite.pids("imap"), timeout=20)
        queued = subprocess.Popen([command_path("start-msg"), "pop"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        wait_for(lambda: "start pop" in (root.run_dir / "journal.jsonl").read_text(), timeout=10)
        lines: list[str] = []
        with WatcherClient.connect(root) as client:
            client.request("STOP", on_progress=lambda kind, text: lines.append(text))
        assert "".join(lines).startswith("Stopping imap server "), lines
        for p in (first, queued):
            out, err = p.communicate(timeout=10)
            assert p.returncode == 1 and err.startswith("start-msg: " + M.START_INTERRUPTED.format(by=" by ")), err
    finally:
        for p in (first, queued):
            if p is not None and p.poll() is None:
                p.kill()
    assert not [ln for ln in suite.log_lines() if ln.startswith("Starting pop server")]
    st = suite.status()
    assert all(st[c]["state"] == "STOPPED" and not st[c]["pids"] for c in STORE_MEMBERS), st


def test_a_start_asked_of_a_watcher_on_its_way_out_is_refused(suite, cli, root):
    """start-msg while stop-msg's shutdown waits for a slow imapd: refused at once with why, and
    nothing is started by the exiting watcher (which would leave those servers unwatched); a stop
    asked meanwhile is answered with the shutdown. Nothing is left."""
    import subprocess

    from msgsrv import messages as M
    from tests.watcher.conftest import command_path, wait_for

    suite.configure(args={"imap": "--slow-term 3"})
    assert cli("start-msg").returncode == 0
    stop = subprocess.Popen([command_path("stop-msg")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: not suite.pids("pop"), timeout=20)  # pop stopped: imap's 3 s are next
        time.sleep(0.3)
        assert suite.pids("imap")
        r = cli("start-msg", timeout=30)
        assert r.returncode == 1 and r.stderr.startswith(
            "start-msg: " + M.SHUTTING_DOWN.format(by=" (asked by stop-msg[")), r.stdout + r.stderr
        assert cli("stop-msg", "pop", timeout=30).returncode == 0  # answered when the shutdown is done
        out, err = stop.communicate(timeout=30)
    finally:
        if stop.poll() is None:
            stop.kill()
    assert stop.returncode == 0, out + err
    assert wait_for(lambda: not [c for c in STORE_MEMBERS if suite.pids(c)], timeout=10)
    from tests.watcher.test_issue_10 import root_processes

    assert wait_for(lambda: not root_processes(root.base), timeout=10), root_processes(root.base)
    starts = [ln for ln in suite.log_lines() if ln.startswith("Starting ")]
    assert len(starts) == len(STORE_MEMBERS), starts  # only the first start-msg's


STORE_MEMBERS = ("store", "imap", "pop", "http")


def test_a_watcher_killed_during_its_shutdown_leaves_a_stop_to_finish_not_failures(suite, cli, root):
    """SIGTERM to the watcher (a shutdown: it stops everything, then exits), and while imap takes
    its 2 s after SIGTERM the watcher is killed. The next watcher finds imap and the store alive
    but not meant to run: it finishes that stop; http and pop, stopped by the shutdown, are not
    counted as failures; start-msg then starts everything with no restart counted."""
    import os
    import signal

    from msgsrv import messages as M
    from tests.watcher.conftest import wait_for

    suite.configure(components=("store", "imap", "pop", "http"), args={"imap": "--slow-term 2"})
    assert cli("start-msg").returncode == 0
    old_imap = suite.pids("imap")
    os.kill(suite.watcher_pid(), signal.SIGTERM)
    wait_for(lambda: not suite.pids("pop"), timeout=20)  # http and pop stopped: imap's SIGTERM is next
    time.sleep(0.3)
    assert suite.pids("imap") == old_imap
    os.kill(suite.watcher_pid(), signal.SIGKILL)
    r = cli("start-msg", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    time.sleep(2.5)  # past the old imap's exit
    st = suite.status()
    for c in STORE_MEMBERS:
        assert st[c]["state"] == "RUNNING" and st[c]["restarts"] == 0 and st[c]["last_exit"] is None, st[c]
    assert st["imap"]["pids"] != old_imap
    assert M.STOP_RESUMED.format(names="store imap") in suite.log_lines(), suite.log_lines()
    journal = (root.run_dir / "journal.jsonl").read_text()
    assert '"kind":"exit"' not in journal and '"kind":"restart-queued"' not in journal, journal


def test_stop_msg_f_kills_at_once_through_the_watcher(suite, cli):
    """stop-msg -f with a watcher up: SHUTDOWN -f, every server SIGKILLed at once; an imapd that
    ignores SIGTERM, with a minute's stoptimeout, does not hold it up. Nothing is left."""
    from tests.watcher.conftest import wait_for

    suite.configure(components=("store", "imap"), args={"imap": "--ignore-term"},
                    **{"local.imap.stoptimeout": "60"})
    assert cli("start-msg").returncode == 0
    r = cli("stop-msg", "-f", timeout=20)  # without -f: a minute for imap
    assert r.returncode == 0, r.stdout + r.stderr
    assert [" ".join(ln.split()[:2]) for ln in r.stdout.splitlines()] == ["Stopping imap", "Stopping store",
                                                                          "Stopping watcher"], r.stdout
    assert wait_for(lambda: not suite.pids("imap") and not suite.pids("store"), timeout=10)


def test_ctrl_c_on_start_msg_ends_its_line_and_says_the_watcher_goes_on(suite, cli):
    """Ctrl-C on a start-msg waiting for a slow imapd: before, exit 130 with the line left
    unfinished (`Starting imap server .........` and nothing after it) and not a word on stderr.
    The line now ends `interrupted`, one line says the watcher goes on with the start (it does:
    the interrupt stops start-msg's waiting, not the watcher's work)."""
    import signal
    import subprocess

    from tests.watcher.conftest import command_path, wait_for

    suite.configure(args={"imap": "--delay 3"}, **{"local.imap.starttimeout": "30"})
    start = subprocess.Popen([command_path("start-msg")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: suite.pids("imap"), timeout=20)  # imap spawned, still silent
        time.sleep(0.3)
        start.send_signal(signal.SIGINT)
        out, err = start.communicate(timeout=10)
    finally:
        if start.poll() is None:
            start.kill()
    assert start.returncode == 130, (out, err)
    assert out.endswith(" interrupted\n") and out.splitlines()[-1].startswith("Starting imap server ."), out
    assert err == "start-msg: interrupted; the watcher goes on with the start (watcher status shows where it is)\n", err
    st = wait_for(lambda: (s := suite.status()) and all(s[c]["state"] == "RUNNING" for c in STORE_MEMBERS) and s,
                  timeout=20)
    assert st["imap"]["pids"]
