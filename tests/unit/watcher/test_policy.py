import pytest

from msgsrv.watcher.policy import RestartBudget, Verdict

R, G = Verdict.RESTART, Verdict.GIVE_UP


@pytest.mark.parametrize("times,expected", [
    ([0, 100, 200], [R, R, G]),
    ([0, 100, 800], [R, R, R]),
    ([0, 600, 700], [R, R, R]),  # exactly `window` later the first restart has left the window
    ([0, 599, 599.5], [R, R, G]),
    ([0, 100, 200, 650, 700], [R, R, G, R, R]),
    ([0, 100, 200, 650, 690], [R, R, G, R, G]),
])
def test_third_failure_inside_window_gives_up(times, expected):
    b = RestartBudget(limit=2, window=600.0)
    assert [b.record("store", t) for t in times] == expected


def test_units_have_separate_budgets():
    b = RestartBudget(limit=2, window=600.0)
    assert [b.record("store", 0), b.record("store", 1), b.record("dispatcher", 2)] == [R, R, R]
    assert b.record("store", 3) is G
    assert b.snapshot(3) == {"store": 2, "dispatcher": 1}


def test_give_up_is_not_counted_and_window_slides():
    b = RestartBudget(limit=2, window=10.0)
    assert [b.record("u", t) for t in (0, 1, 2, 3)] == [R, R, G, G]
    assert b.in_window("u", 10.5) == 1
    assert b.record("u", 10.5) is R


def test_reset_forgets_a_unit():
    b = RestartBudget(limit=2, window=600.0)
    b.record("u", 0)
    b.record("u", 1)
    b.reset("u")
    assert b.record("u", 2) is R
