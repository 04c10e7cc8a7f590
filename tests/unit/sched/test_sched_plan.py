"""The pure parts of msgsrv/sched/imsched.py: which tasks, which argv, which next time."""

from datetime import datetime, timedelta
from pathlib import Path

from msgsrv.sched.cron import parse
from msgsrv.sched.imsched import load_tasks, next_time, resolve_command


def test_default_schedule_has_msprobe_every_ten_minutes():
    tasks, problems = load_tasks({})
    assert [(t.name, t.schedule.text) for t in tasks] == [("msprobe", "5,15,25,35,45,55 * * * * lib/msprobe")]
    assert problems == []


def test_overrides_add_disable_and_report_bad_entries():
    tasks, problems = load_tasks({
        "local.schedule.msprobe.enable": "no",
        "local.schedule.purge": "30 lib/mboxutil -l",
        "local.schedule.bad": "99 * * * * x",
        "local.schedule.off": "1 x", "local.schedule.off.enable": "off",
        "local.schedule.empty": "",
        "local.probe.imap.timeout": "3",
    })
    assert [t.name for t in tasks] == ["purge"]
    assert len(problems) == 1 and problems[0].startswith("local.schedule.bad: ")


def test_relative_suite_program_runs_with_this_interpreter():
    assert resolve_command(("lib/msprobe", "-q"), Path("/srv"), python="/py") == [
        "/py", "-m", "msgsrv.cli.msprobe", "-q"]
    assert resolve_command(("sbin/start-msg",), Path("/srv"), python="/py") == ["/py", "-m", "msgsrv.cli.start_msg"]


def test_other_commands():
    assert resolve_command(("bin/tool", "a"), Path("/srv")) == ["/srv/bin/tool", "a"]
    assert resolve_command(("/bin/echo", "a"), Path("/srv")) == ["/bin/echo", "a"]
    assert resolve_command(("/bin/echo", "a", ">", "out.txt"), Path("/srv")) == [
        "/bin/sh", "-c", "/bin/echo a > out.txt"]


def test_seconds_schedule_keeps_its_beat_and_catches_up():
    s = parse("2 x")
    t0 = datetime(2026, 1, 1, 0, 0, 0)
    assert next_time(s, t0 + timedelta(seconds=0.1), previous=t0) == t0 + timedelta(seconds=2)
    late = t0 + timedelta(seconds=7)
    assert next_time(s, late, previous=t0) == late + timedelta(seconds=2)


def test_cron_next_time_ignores_previous():
    s = parse("0 12 13 * 5 x")
    assert next_time(s, datetime(2026, 1, 1), previous=datetime(2025, 1, 1)) == datetime(2026, 2, 13, 12)
