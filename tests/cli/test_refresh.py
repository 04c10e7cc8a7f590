"""refresh: the real command against a real watcher and imsched started by start-msg."""

from __future__ import annotations

import json
import re

import psutil
import pytest

from msgsrv import procinfo
from tests.conftest import free_ports, wait_for


def ok(r, stdout: str = "") -> None:
    assert (r.returncode, r.stdout, r.stderr) == (0, stdout, "")


def pid_of(base, name: str) -> int:
    return json.loads((base / "data" / "run" / f"{name}.pid").read_text())[0]["pid"]


def default_log(base) -> str:
    try:
        return (base / "data" / "log" / "default").read_text()
    except FileNotFoundError:
        return ""


@pytest.fixture
def sched_suite(cli, base):
    watcher_port, sched_port, console_port = free_ports(3)
    settings = base.parent / "settings.txt"
    settings.write_text(f"local.watcher.port={watcher_port}\nlocal.sched.port={sched_port}\n"
                        f"local.watcher.httpport={console_port}\n"
                        "local.schedule.msprobe.enable=no\nlocal.autorestart=yes\n")
    ok(cli("configutil", "-i", str(settings)))
    r = cli("start-msg", "sched")
    assert r.returncode == 0, r.stdout + r.stderr
    yield
    cli("stop-msg")


def test_refresh_all_signals_the_watcher_and_imsched(cli, base, sched_suite):
    watcher, sched = pid_of(base, "watcher"), pid_of(base, "sched")
    wait_for(lambda: default_log(base).count("imsched Info: schedule loaded") == 1)
    ok(cli("refresh"), f"Refreshing watcher {watcher}\nRefreshing sched server {sched}\n")
    wait_for(lambda: default_log(base).count("imsched Info: schedule loaded") == 2)
    ok(cli("refresh", "sched"), f"Refreshing sched server {sched}\n")
    wait_for(lambda: default_log(base).count("imsched Info: schedule loaded") == 3)
    ok(cli("refresh", "watcher"), f"Refreshing watcher {watcher}\n")
    # SIGHUP is a reload for both: neither died of it, nothing was restarted
    assert psutil.pid_exists(watcher) and psutil.pid_exists(sched)
    assert (pid_of(base, "watcher"), pid_of(base, "sched")) == (watcher, sched)
    r = cli("watcher", "status")
    # exit 3: the other enabled components were never started (issue 10); sched runs, same pid
    assert r.returncode == 3, r.stdout + r.stderr
    assert re.search(rf"^sched\s+imsched\s+RUNNING\s+{sched}\s", r.stdout, re.M), r.stdout


def test_refresh_of_a_daemon_that_is_not_running_is_one_line_exit_1(cli, base):
    r = cli("refresh", "sched")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "refresh: sched server is not running\n")
    r = cli("refresh")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", "refresh: neither the watcher nor the sched server is running\n")


def test_stale_pid_file_is_not_taken_for_a_daemon(cli, base):
    run = base / "data" / "run"
    run.mkdir(parents=True)
    me = psutil.Process()
    (run / "sched.pid").write_text(json.dumps([{"pid": me.pid, "start_ticks": procinfo.start_ticks(me.pid) - 100}]))
    r = cli("refresh", "sched")
    assert (r.returncode, r.stderr) == (1, "refresh: sched server is not running\n")


def test_refresh_usage_error(cli):
    r = cli("refresh", "imap")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("refresh: Invalid value for")
    assert r.stderr.count("\n") == 1


def test_man_page_renders_and_names_every_choice_and_option():
    import shutil
    import subprocess
    from pathlib import Path

    from msgsrv.cli.refresh import TARGETS, command

    page = Path(__file__).resolve().parents[2] / "man" / "refresh.8"
    text = page.read_text().replace("\\-", "-")
    opts = {o for p in command.params for o in getattr(p, "opts", []) if o.startswith("-")} | {"-h", "--help"}
    assert sorted(o for o in opts if o not in text) == [] and all(t in text for t in TARGETS)
    if shutil.which("groff"):
        r = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True)
        assert r.stderr == ""


def test_bash_completion_script_is_printed():
    import os
    import subprocess

    from tests.conftest import command_path

    r = subprocess.run([command_path("refresh")], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "_REFRESH_COMPLETE": "bash_source"})
    assert (r.returncode, r.stderr) == (0, "") and "complete -o nosort -F _refresh_completion refresh" in r.stdout
