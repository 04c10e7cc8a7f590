"""msgsrv/config/rules.py: name and value checks, and the cross-field rule of SPEC §3."""

from __future__ import annotations

import pytest

from msgsrv.config import rules

HOURLY = "0 * * * * lib/msprobe"
DEFAULT_SCHEDULE = "5,15,25,35,45,55 * * * * lib/msprobe"


def message(fn, *args) -> str:
    with pytest.raises(ValueError) as e:
        fn(*args)
    return str(e.value)


# -- names and values ------------------------------------------------------------
def test_unknown_name_suggests_the_closest():
    assert message(rules.check_name, "local.defdomian") == \
        "unknown parameter 'local.defdomian' (did you mean 'local.defdomain'?)"


def test_unknown_name_without_a_close_one():
    assert message(rules.check_name, "zzzz") == "unknown parameter 'zzzz'"


def test_known_name_returns_its_row():
    assert rules.check_name("local.probe.imap.timeout").name == "local.probe.<svc>.timeout"


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("local.autorestart", "maybe",
     "invalid value 'maybe' for local.autorestart: expected a boolean (yes/no, on/off, 1/0)"),
    ("local.probe.history.days", "many", "invalid value 'many' for local.probe.history.days: expected an integer"),
    ("service.imap.port", "70000",
     "invalid value '70000' for service.imap.port: port 70000 is out of range (1-65535)"),
    ("local.autorestart.timeout", "10m",
     "invalid value '10m' for local.autorestart.timeout: expected a number of seconds"),
    ("local.schedule.backup", "daily",
     "invalid value 'daily' for local.schedule.backup: expected 5 crontab fields and a command "
     "(min hour dom month dow command), or seconds and a command"),
])
def test_bad_value_names_parameter_and_expected_type(name, text, expected):
    assert message(rules.check_value, name, text) == expected


@pytest.mark.parametrize("name", ["local.autorestart", "service.imap.port", "local.schedule.msprobe"])
def test_empty_value_is_accepted_for_every_type(name):
    rules.check_value(name, "")


def test_check_value_checks_the_name_first():
    assert message(rules.check_value, "local.autorestrat", "yes") == \
        "unknown parameter 'local.autorestrat' (did you mean 'local.autorestart'?)"


# -- the cross-field rule ------------------------------------------------------------
def test_defaults_satisfy_the_rule():
    rules.check_cross_field({})  # 600 s and every 10 minutes: equal, valid


def test_timeout_equal_to_the_cron_gap_is_enough():
    rules.check_cross_field({"local.schedule.msprobe": HOURLY, "local.autorestart.timeout": "3600"})


def test_timeout_shorter_than_the_default_cron_gap_is_refused():
    assert message(rules.check_cross_field, {"local.autorestart.timeout": "599"}) == (
        "local.autorestart.timeout (599 s) must be at least the longest gap between two msprobe runs "
        f'(600 s from local.schedule.msprobe = "{DEFAULT_SCHEDULE}")')


def test_cron_schedule_longer_than_the_timeout_is_refused():
    assert message(rules.check_cross_field, {"local.schedule.msprobe": HOURLY}) == (
        "local.autorestart.timeout (600 s) must be at least the longest gap between two msprobe runs "
        f'(3600 s from local.schedule.msprobe = "{HOURLY}")')


def test_irregular_cron_schedule_uses_the_longest_gap():
    # 02:00 and 03:00 every day: the longest gap is 23 hours
    sched = "0 2,3 * * * lib/msprobe"
    rules.check_cross_field({"local.schedule.msprobe": sched, "local.autorestart.timeout": "82800"})
    assert "(82800 s from" in message(
        rules.check_cross_field, {"local.schedule.msprobe": sched, "local.autorestart.timeout": "82799"})


def test_seconds_schedule():
    rules.check_cross_field({"local.schedule.msprobe": "30 lib/msprobe", "local.autorestart.timeout": "30"})
    assert message(rules.check_cross_field,
                   {"local.schedule.msprobe": "30 lib/msprobe", "local.autorestart.timeout": "29.5"}) == (
        "local.autorestart.timeout (29.5 s) must be at least the longest gap between two msprobe runs "
        '(30 s from local.schedule.msprobe = "30 lib/msprobe")')


def test_disabled_msprobe_schedule_is_not_checked():
    rules.check_cross_field({"local.schedule.msprobe": HOURLY, "local.schedule.msprobe.enable": "no"})


def test_empty_values_fall_back_to_the_defaults():
    rules.check_cross_field({"local.autorestart.timeout": "", "local.schedule.msprobe": ""})


def test_bad_values_are_left_to_check_value():
    rules.check_cross_field({"local.autorestart.timeout": "soon", "local.schedule.msprobe": "never"})


def test_validate_change_checks_cross_field_only_when_concerned():
    broken = {"local.schedule.msprobe": HOURLY}  # breaks the rule, but is not being changed
    rules.validate_change({**broken, "local.defdomain": "example.org"}, ["local.defdomain"])
    with pytest.raises(ValueError, match="^local.autorestart.timeout"):
        rules.validate_change(broken, ["local.schedule.msprobe"])


def test_validate_change_on_deletion():
    # deleting the longer timeout brings back 600 s, shorter than an hourly probe
    overrides = {"local.schedule.msprobe": HOURLY}
    with pytest.raises(ValueError, match=r"^local.autorestart.timeout \(600 s\)"):
        rules.validate_change(overrides, ["local.autorestart.timeout"])


def test_validate_change_checks_values():
    assert message(rules.validate_change, {"service.pop.port": "0"}, ["service.pop.port"]) == \
        "invalid value '0' for service.pop.port: port 0 is out of range (1-65535)"


def test_validate_all_lists_every_problem_sorted():
    problems = rules.validate_all({
        "service.imap.port": "70000",
        "local.autorestart": "maybe",
        "bogus.name": "x",
        "local.defdomain": "example.org",
        "local.autorestart.timeout": "60",
    })
    assert problems == [
        "unknown parameter 'bogus.name'",
        "invalid value 'maybe' for local.autorestart: expected a boolean (yes/no, on/off, 1/0)",
        "invalid value '70000' for service.imap.port: port 70000 is out of range (1-65535)",
        "local.autorestart.timeout (60 s) must be at least the longest gap between two msprobe runs "
        f'(600 s from local.schedule.msprobe = "{DEFAULT_SCHEDULE}")',
    ]


def test_validate_all_on_a_good_store():
    assert rules.validate_all({"local.autorestart": "yes", "local.probe.imap.timeout": "8"}) == []
