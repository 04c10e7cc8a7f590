"""msgsrv/services/authlimit.py: failed logins cost a growing delay per source address."""

from msgsrv.services.authlimit import MAX_DELAY, LoginThrottle


def test_delay_doubles_per_failure_and_is_capped():
    t = LoginThrottle(base=0.5, cap=MAX_DELAY)
    delays = [t.failed("10.0.0.1", now=float(i)) for i in range(8)]
    assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert max(delays) == MAX_DELAY


def test_addresses_are_counted_apart_and_success_forgets():
    t = LoginThrottle()
    t.failed("a", now=0)
    t.failed("a", now=1)
    assert t.failed("b", now=2) == 0.5
    t.succeeded("a")
    assert t.failures("a", now=3) == 0
    assert t.failed("a", now=3) == 0.5


def test_old_failures_are_forgotten():
    t = LoginThrottle()
    for i in range(5):
        t.failed("a", now=float(i))
    assert t.failed("a", now=10_000.0) == 0.5
