"""A start of several components: dependencies first, the rest together, lines in start order.

The watcher "is aware of any dependencies the other services have, and in which sequence the
services should be started" (the manuals): a component starts once the ones it comes after
(components.py, `after`) have been started; components that do not wait for each other start
together; start-msg and the watcher log show their lines in start order all the same. Real
processes (fakesrv.py stand-ins that listen only after --delay), the real commands.
"""

from __future__ import annotations

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
