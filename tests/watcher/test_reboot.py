"""After the system restarts, the watcher reports no failure that did not happen.

A watcher and its servers that end with the machine leave their records (data/run/watcher.json,
supervision.json, the pid files) naming the boot they ran in. The next watcher compares it with
this boot's id: from another boot, no process of those records can run and none of them failed; it
says so (`... ended with the system's restart; nothing to adopt`); start-msg, which launched it,
starts the suite as on a first boot (a watcher run by hand starts what was meant to run: `starting
what was running before the system's restart: ...`), with no restart counted, no last
exit made up and no budget spent. Within the same boot, everything killed at once is still every
server's failure (never lost). The reboot is the records' boot id changed, as a real one leaves it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from msgsrv import messages as M
from tests.conftest import command_path, wait_for
from tests.watcher.conftest import Suite
from tests.watcher.test_issue_10 import root_processes
from tests.watcher.test_prefork import STORE, Builtin

OTHER_BOOT = "00000000-1111-2222-3333-444444444444"


@pytest.fixture
def builtin(root, cli):
    b = Builtin(root, cli)
    yield b
    cli("stop-msg", "-f", timeout=60)


def kill_everything(suite) -> None:
    """What a power cut does to the suite's processes: all gone at once, no exit handled."""
    for p in root_processes(suite.root.base):
        os.kill(p.pid, signal.SIGKILL)
    assert wait_for(lambda: not root_processes(suite.root.base), timeout=10)


def from_another_boot(suite) -> None:
    """The records as the killed suite left them, written in another boot."""
    for name in ("watcher.json", "supervision.json"):
        path = suite.root.run_dir / name
        data = json.loads(path.read_text())
        data["boot_id"] = OTHER_BOOT
        path.write_text(json.dumps(data))


FAILURE_KINDS = ("exit", "exited", "start-failed", "disconnect", "hang", "utility", "restart-queued", "restart-started",
                 "give-up", "not-restarted")


def journal_since_start(suite) -> list[dict]:
    """The journal's events since the last watcher started."""
    journal = [json.loads(ln) for ln in (suite.root.run_dir / "journal.jsonl").read_text().splitlines()]
    return journal[max(i for i, e in enumerate(journal) if e["kind"] == "watcher-start"):]


def all_running(suite) -> dict:
    def up() -> bool:
        comps = Suite.status(suite)
        return all(c["state"] == "RUNNING" and c["pids"] for c in comps.values() if c["enabled"])

    assert wait_for(up, timeout=20), Suite.status(suite)
    return Suite.status(suite)


def test_after_a_reboot_start_msg_starts_the_suite_with_no_failure_counted(builtin):
    """start-msg (the admin's, systemd's) launches the watcher after the reboot: its request says
    what to start, as on a first boot, so its lines are the start's (`Starting ...`), not
    `already running` for a start the watcher had made on its own first."""
    builtin.configure()
    builtin.start()
    before = {c: builtin.pids(c) for c in STORE}
    kill_everything(builtin)
    from_another_boot(builtin)
    r = builtin.cli("start-msg")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [ln.split(" server")[0] for ln in r.stdout.splitlines() if ln.startswith("Starting ")] == \
        ["Starting store", "Starting imap", "Starting pop", "Starting http"], r.stdout
    assert "already running" not in r.stdout
    after = _after_reboot(builtin, before)
    assert M.START_AFTER_REBOOT.format(names="store imap pop http") not in after, after


def test_after_a_reboot_a_watcher_run_by_hand_starts_what_was_running(builtin):
    """With no start request to follow (the watcher run by hand), the watcher starts what was
    meant to run before the reboot itself, and says so."""
    builtin.configure()
    builtin.start()
    before = {c: builtin.pids(c) for c in STORE}
    kill_everything(builtin)
    from_another_boot(builtin)
    subprocess.Popen([command_path("watcher")], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    assert wait_for(lambda: builtin.cli("watcher", "status").returncode in (0, 3), timeout=15)
    after = _after_reboot(builtin, before)
    assert M.START_AFTER_REBOOT.format(names="store imap pop http") in after, after


def _after_reboot(builtin, before: dict) -> list[str]:
    """Every store member up with new pids, nothing counted or made up; the new watcher's log lines."""
    comps = all_running(builtin)
    for c in STORE:
        assert comps[c]["restarts"] == 0 and comps[c]["last_exit"] is None, comps[c]
        assert set(comps[c]["pids"]).isdisjoint(before[c])
    lines = builtin.log_lines()
    start = max(i for i, ln in enumerate(lines) if ln.startswith("watcher process") and "started at" in ln)
    after = lines[start:]
    assert any(ln.endswith("ended with the system's restart; nothing to adopt") for ln in after), after
    assert not [ln for ln in after if "not running" in ln or "exited" in ln or "restart" in ln.lower()
                and "system's restart" not in ln], after
    assert not [e for e in journal_since_start(builtin) if e["kind"] in FAILURE_KINDS]
    return after


def test_in_the_same_boot_everything_killed_at_once_is_every_servers_failure(builtin):
    builtin.configure()
    builtin.start()
    kill_everything(builtin)
    r = builtin.cli("start-msg")
    assert r.returncode == 0, r.stdout + r.stderr
    comps = all_running(builtin)
    assert comps["imap"]["restarts"] >= 1  # the store group's restart: the failures were counted
    exited = {e["component"] for e in journal_since_start(builtin) if e["kind"] == "exit"}
    assert exited and exited <= set(STORE), journal_since_start(builtin)  # one failure covers the unit
    assert M.PREVIOUS_DIED.split("{pid}")[1] in builtin.log()
    assert "ended with the system's restart" not in builtin.log()


def test_logs_renamed_away_by_logrotate_are_made_again_at_the_next_line(builtin):
    """logrotate's default (rename, then the program writes a new file): every msgsrv log line is
    appended by opening the file, so the next line lands in a new file, owner-only, with nothing
    to signal (the servers' *.out files, held open as stdout/stderr, take copytruncate; README)."""
    from tests.watcher.test_prefork import all_running as store_running
    from tests.watcher.test_prefork import new_pid

    builtin.configure()
    builtin.start()
    logs = builtin.root.log_dir
    for name in ("watcher", "default"):
        (logs / name).rename(logs / f"{name}.1")
    old = builtin.pids("imap")
    os.kill(old[0], signal.SIGKILL)
    new = new_pid(builtin, "imap", old)
    store_running(builtin)
    text = (logs / "watcher").read_text()
    assert f"Starting imap server ... {new}" in text and f"Starting imap server ... {new}" not in \
        (logs / "watcher.1").read_text()
    assert oct((logs / "watcher").stat().st_mode & 0o777) == "0o600"
    assert wait_for(lambda: (logs / "default").exists(), timeout=10)  # the new servers' start lines
    assert oct((logs / "default").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("kind", ["built-in", "command"])
def test_a_removed_log_directory_is_made_again_and_restarts_go_on(builtin, kind):
    """`rm -rf data/log` under a running suite (a cleanup gone too far): the next crash is logged
    in a new, owner-only directory and its restart succeeds, for a forked built-in server and for
    a spawned command alike. Before, every restart failed (the server's .out could not be opened:
    exit status 70 or `unable to start`) and the store group went FATAL, its crash lines lost."""
    import shutil
    import sys

    from tests.watcher.conftest import FAKE
    from tests.watcher.test_prefork import all_running as store_running
    from tests.watcher.test_prefork import new_pid

    builtin.configure()
    if kind == "command":
        port = builtin.cli("configutil", "-o", "service.imap.port").stdout.strip()
        assert builtin.cli("configutil", "-o", "local.imap.command", "-v",
                           f"{sys.executable} -S {FAKE} {port}").returncode == 0
    builtin.start()
    logs = builtin.root.log_dir
    shutil.rmtree(logs)
    old = builtin.pids("imap")
    os.kill(old[0], signal.SIGKILL)
    new = new_pid(builtin, "imap", old)
    store_running(builtin)
    st = Suite.status(builtin)
    assert all(st[c]["state"] == "RUNNING" and st[c]["restarts"] == 1 for c in STORE), st
    assert oct(logs.stat().st_mode & 0o777) == "0o700"
    lines = (logs / "watcher").read_text()
    assert f"Watched 'imapd' process {old[0]} exited abnormally" in lines
    assert f"Starting imap server ... {new}" in lines
    assert oct((logs / "imap.out").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("kind", ["built-in", "command"])
def test_a_server_whose_output_file_cannot_be_opened_still_serves(builtin, kind):
    """data/log/imap.out made unopenable (here a directory in its place, which stops root too): a
    forked imapd, or a spawned command, serves all the same, its output discarded, and the default
    log says why. Before, the forked one exited 70 at every start with no reason anywhere the admin
    looks, and the command failed to start (`unable to start: is a directory`)."""
    import socket
    import sys

    from tests.watcher.conftest import FAKE

    builtin.configure()
    port = int(builtin.cli("configutil", "-o", "service.imap.port").stdout)
    if kind == "command":
        assert builtin.cli("configutil", "-o", "local.imap.command", "-v",
                           f"{sys.executable} -S {FAKE} {port}").returncode == 0
    out = builtin.root.log_dir / "imap.out"
    builtin.root.log_dir.mkdir(parents=True, exist_ok=True)
    out.mkdir()
    builtin.start()
    st = all_running(builtin)
    pid = st["imap"]["pids"][0]
    assert st["imap"]["restarts"] == 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        assert s.recv(100).startswith(b"* OK")
    why = f"unable to open {out}: is a directory; its output is discarded"
    default = (builtin.root.log_dir / "default").read_text()
    who = f"imapd[{pid}] Warning: " if kind == "built-in" else f"watcher Warning: imap server {pid}: "
    assert who + why in default, default


def test_a_removed_run_directory_is_written_again_and_the_next_crash_is_healed(builtin):
    """`rm -rf data/run` under a running suite took the token, the run record, the lock and the
    pid files: no command could reach the watcher, and the next crash of imapd left the whole
    store group down (the restarted servers could not read the token to register, so none became
    ready). The watcher now writes them again within a second, takes a new lock, and heals."""
    import shutil

    from tests.watcher.test_prefork import all_running as store_running
    from tests.watcher.test_prefork import new_pid

    builtin.configure()
    builtin.start()
    run = builtin.root.run_dir
    watcher, before = builtin.watcher(), {c: builtin.pids(c) for c in STORE}
    shutil.rmtree(run)
    names = ("watcher.token", "watcher.json", "watcher.pid", "watcher.lock", "supervision.json",
             *(f"{c}.pid" for c in STORE))
    wait_for(lambda: all((run / n).exists() for n in names), timeout=10)
    assert oct(run.stat().st_mode & 0o777) == "0o700"
    assert {c: builtin.pids(c) for c in STORE} == before and builtin.watcher() == watcher
    assert f"{run} had lost " in (builtin.root.log_dir / "watcher").read_text()
    # the lock is the watcher's again: a second start-msg finds it, no second watcher is launched
    r = builtin.cli("start-msg")
    assert r.returncode == 0 and "Launching watcher" not in r.stdout, r.stdout + r.stderr
    old = builtin.pids("imap")
    os.kill(old[0], signal.SIGKILL)
    new_pid(builtin, "imap", old)
    store_running(builtin)
    st = Suite.status(builtin)
    assert all(st[c]["state"] == "RUNNING" and st[c]["restarts"] == 1 for c in STORE), st


def test_a_server_its_pid_file_does_not_name_is_found_in_its_cgroup(builtin):
    """The watcher restarted imapd while its pid file could not be written (a full disk), then
    died; the file still names the imapd that crashed. Before, the next watcher counted that
    crash again (a store-group restart) and its restart's cgroup clearing killed the imapd that
    served. The kernel's record, the cgroup, names the server: it is adopted, nothing counted."""
    from msgsrv import procinfo
    from msgsrv.watcher import cgroup

    if cgroup.Cgroups.detect(builtin.root.base) is None:
        pytest.skip("no writable cgroup v2 tree here: process groups only")
    builtin.configure()
    builtin.start()
    imapd, watcher = builtin.pids("imap"), builtin.watcher()
    os.kill(watcher, signal.SIGKILL)
    wait_for(lambda: not procinfo.same_process(watcher), timeout=10)
    gone = subprocess.Popen(["true"])
    gone.wait()
    builtin.root.pid_file("imap").write_text(json.dumps([{"pid": gone.pid, "start_ticks": 1, "worker": 0}]))
    builtin.start()
    st = Suite.status(builtin)
    assert all(st[c]["state"] == "RUNNING" and st[c]["restarts"] == 0 for c in STORE), st
    assert st["imap"]["pids"] == imapd
    log = (builtin.root.log_dir / "watcher").read_text()
    assert f"imap server {imapd[0]} found running in its cgroup, though imap.pid did not name it" in log
    assert "exited abnormally" not in log and "Received request to restart" not in log
    assert json.loads(builtin.root.pid_file("imap").read_text())[0]["pid"] == imapd[0]
