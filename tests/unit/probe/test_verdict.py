"""msgsrv/probe/verdict.py: pure decisions on plain values."""

import pytest

from msgsrv.probe.checks import ProbeResult
from msgsrv.probe.verdict import Status, alarm_condition, classify, restart_request, restart_unit

ALL = ["ens", "store", "imap", "pop", "cert", "http", "sched", "dispatcher", "job_controller"]


def r(elapsed, ok=True, timed_out=False):
    return ProbeResult("imap", 10143, elapsed, ok, "", timed_out)


@pytest.mark.parametrize("result,status", [
    (r(0.01), Status.OK),
    (r(5.0), Status.OK),  # exactly the warning threshold is still OK
    (r(5.01), Status.WARN),
    (r(10.0), Status.WARN),  # answered exactly at the timeout
    (r(10.5), Status.HUNG),  # answered, but too late
    (r(10.0, ok=False, timed_out=True), Status.HUNG),
    (r(0.001, ok=False), Status.DOWN),
])
def test_classify(result, status):
    assert classify(result, warn=5, timeout=10) is status


def test_only_ok_and_warn_are_healthy():
    assert [s.healthy for s in Status] == [True, True, False, False]


@pytest.mark.parametrize("service,unit", [
    ("imap", "store"), ("pop", "store"), ("http", "store"), ("store", "store"),
    ("smtp", "dispatcher"), ("lmtp", "dispatcher"), ("ens", None), ("sched", "sched"),
])
def test_restart_unit(service, unit):
    assert restart_unit(service) == unit


def test_store_member_asks_for_the_whole_enabled_group():
    assert restart_request(["imap"], ALL) == [["store", "imap", "pop", "http"]]
    assert restart_request(["pop"], ["store", "imap", "pop"]) == [["store", "imap", "pop"]]


def test_each_unit_asked_once_ens_never():
    assert restart_request(["smtp", "lmtp", "imap", "http", "ens"], ALL) == [
        ["dispatcher"], ["store", "imap", "pop", "http"]]
    assert restart_request(["ens"], ALL) == []


def test_disabled_component_named_explicitly_still_restarted():
    assert restart_request(["mmp"], ALL) == [["mmp"]]


@pytest.mark.parametrize("value,threshold,direction,hit", [
    (11, 10, 1, True), (10, 10, 1, False), (5, 10, -1, True), (10, 10, -1, False)])
def test_alarm_condition(value, threshold, direction, hit):
    assert alarm_condition(value, threshold, direction) is hit
