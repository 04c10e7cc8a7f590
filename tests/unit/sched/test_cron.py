"""msgsrv/sched/cron.py: schedules on fixed dates."""

from datetime import datetime

import pytest

from msgsrv.sched.cron import parse


def test_dom_and_dow_both_restricted_must_both_match():
    # 13th of the month AND Friday: 2026-02-13 and 2026-03-13 are Fridays, 2026-01-13 is not
    s = parse("0 12 13 * 5 /bin/true")
    assert s.next_run(datetime(2026, 1, 1)) == datetime(2026, 2, 13, 12, 0)
    assert s.next_run(datetime(2026, 2, 13, 12, 0)) == datetime(2026, 3, 13, 12, 0)


def test_dom_alone_or_dow_alone_behave_as_cron():
    assert parse("0 0 13 * * x").next_run(datetime(2026, 1, 1)) == datetime(2026, 1, 13)
    assert parse("0 0 * * 5 x").next_run(datetime(2026, 1, 1)) == datetime(2026, 1, 2)  # a Friday


def test_default_msprobe_schedule_every_ten_minutes():
    s = parse("5,15,25,35,45,55 * * * * lib/msprobe")
    assert s.command == ("lib/msprobe",)
    assert s.next_run(datetime(2026, 5, 1, 10, 6)) == datetime(2026, 5, 1, 10, 15)
    assert s.longest_gap() == 600


def test_plain_seconds():
    s = parse("2 lib/msprobe -q")
    assert (s.every, s.command) == (2, ("lib/msprobe", "-q"))
    assert s.next_run(datetime(2026, 1, 1)) == datetime(2026, 1, 1, 0, 0, 2)


@pytest.mark.parametrize("text", ["", "61 * * * * x", "* * * *", "0 lib/msprobe", "5", "x y"])
def test_bad_schedules_raise_value_error(text):
    with pytest.raises(ValueError):
        parse(text)


def test_parsing_a_schedule_starts_no_process():
    """croniter's import asks platform.architecture(), which runs `file` on the interpreter in a
    subprocess (12-45 ms of imsched's start); msgsrv imports it without that, in a fresh
    interpreter as imsched and configutil do, and puts platform.architecture back."""
    import subprocess
    import sys

    code = """
import platform, sys
spawned = []
sys.addaudithook(lambda event, args: spawned.append((event, args)) if event in (
    "subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec") else None)
real = platform.architecture
from msgsrv.sched.cron import parse
s = parse("*/5 * * * * lib/msprobe")
assert "croniter" in sys.modules and platform.architecture is real
assert s.longest_gap() == 300.0
print(spawned)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
