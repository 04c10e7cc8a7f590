"""procinfo: a recorded process is known by its start in clock ticks after boot."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from msgsrv import procinfo


def test_a_process_is_known_by_its_start_in_ticks_after_boot():
    me = os.getpid()
    ticks = procinfo.start_ticks(me)
    assert isinstance(ticks, int) and ticks > 0
    assert abs(ticks / procinfo.CLOCK_TICKS + psutil.boot_time() - psutil.Process(me).create_time()) < 0.02
    assert procinfo.recorded({"pid": me, "start_ticks": ticks})
    assert not procinfo.recorded({"pid": me, "start_ticks": ticks - 1})  # a recycled pid
    assert procinfo.recorded({"pid": me})  # nothing to compare: alive is enough


def test_a_record_of_0_2_0_is_still_compared_on_its_create_time():
    ctime = psutil.Process().create_time()
    assert procinfo.recorded({"pid": os.getpid(), "create_time": ctime})
    assert not procinfo.recorded({"pid": os.getpid(), "create_time": ctime - 50})
    # where both are written, the start in ticks decides (the wall clock may have stepped since)
    assert procinfo.recorded({"pid": os.getpid(), "start_ticks": procinfo.start_ticks(os.getpid()),
                              "create_time": ctime - 3600})


def test_a_gone_process_a_zombie_and_a_pid_of_the_wrong_shape_are_not_it():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    while psutil.Process(p.pid).status() != psutil.STATUS_ZOMBIE:
        pass
    assert procinfo.stat(p.pid)[0] == b"Z"
    assert not procinfo.recorded({"pid": p.pid})
    p.wait()
    assert procinfo.stat(p.pid) is None and not procinfo.same_process(p.pid)
    for pid in (True, -3, 0, "12", None):
        assert not procinfo.recorded({"pid": pid})


def test_the_time_since_boot_is_read():
    up = procinfo.system_uptime()
    assert up is not None and up > procinfo.start_ticks(os.getpid()) / procinfo.CLOCK_TICKS - 1


def test_the_age_of_a_process_is_on_the_clock_since_boot():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        a = procinfo.age(p.pid)
        assert a is not None and 0.0 <= a < 5.0
        assert procinfo.age(os.getpid()) >= a - 0.02  # older than its child
    finally:
        p.kill()
        p.wait()
    assert procinfo.age(p.pid) is None
