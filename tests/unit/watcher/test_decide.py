"""policy.decide and the budget's memory (issue 10): pure, plain timestamps."""

import pytest

from msgsrv.watcher.policy import Action, RestartBudget, decide


def test_a_component_without_unit_is_never_restarted():
    b = RestartBudget()
    assert decide(None, autorestart=True, merge=False, budget=b, now=0) is Action.NEVER
    assert b.grants() == {}


def test_autorestart_off_restarts_nothing_and_spends_nothing():
    b = RestartBudget()
    assert decide("store", autorestart=False, merge=False, budget=b, now=0) is Action.NOT_ON
    assert b.grants() == {}


def test_a_merged_failure_spends_no_grant():
    b = RestartBudget()
    assert decide("store", autorestart=True, merge=True, budget=b, now=0) is Action.MERGE
    assert b.in_window("store", 0) == 0


@pytest.mark.parametrize("times,expected", [
    ([0, 100, 200], [Action.RESTART, Action.RESTART, Action.GIVE_UP]),
    ([0, 100, 700], [Action.RESTART, Action.RESTART, Action.RESTART]),
])
def test_new_failures_spend_grants_until_the_third(times, expected):
    b = RestartBudget(window=600)
    assert [decide("store", autorestart=True, merge=False, budget=b, now=t) for t in times] == expected


def test_grants_survive_through_restore():
    old = RestartBudget(window=600)
    old.record("store", 10.0)
    old.record("store", 20.0)
    new = RestartBudget(window=600)
    new.restore(old.grants())
    assert decide("store", autorestart=True, merge=False, budget=new, now=30.0) is Action.GIVE_UP
    assert decide("store", autorestart=True, merge=False, budget=new, now=611.0) is Action.RESTART
