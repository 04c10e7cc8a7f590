"""msgsrv/config/catalogue.py: exact names, pattern families, defaults, suggestions."""

from __future__ import annotations

import pytest

from msgsrv.config import catalogue
from msgsrv.config.catalogue import lookup, suggest

# SPEC §2–§3 and reference §5: every name the issue asks for, with its type and default.
REQUIRED = [
    ("local.watcher.enable", "boolean", "yes"),
    ("local.watcher.port", "port", "49994"),
    ("local.autorestart", "boolean", "no"),
    ("local.autorestart.timeout", "duration", "600"),
    ("local.schedule.msprobe", "probe_schedule", "5,15,25,35,45,55 * * * * lib/msprobe"),
    ("local.schedule.msprobe.enable", "boolean", "yes"),
    ("local.probe.warningthreshold", "duration", "5"),
    ("service.readtimeout", "duration", "10"),
    ("local.queuedir", "string", ""),
    ("local.defdomain", "host", ""),
    ("local.store.enable", "boolean", "yes"),
    ("service.imap.enable", "boolean", "yes"),
    ("service.pop.enable", "boolean", "yes"),
    ("service.http.enable", "boolean", "yes"),
    ("local.imta.enable", "boolean", "yes"),
    ("local.ens.enable", "boolean", "yes"),
    ("local.sched.enable", "boolean", "yes"),
    ("local.mmp.enable", "boolean", "no"),
    ("service.imap.port", "port", "10143"),
    ("service.pop.port", "port", "10110"),
    ("service.http.port", "port", "10080"),
    ("service.smtp.port", "port", "10025"),
    ("service.lmtp.port", "port", "10024"),
    ("local.mmp.imapport", "port", "17143"),
    ("local.mmp.popport", "port", "17110"),
    ("local.ens.port", "port", "7997"),
    ("local.job_controller.port", "port", "27442"),
    ("local.store.port", "port", "10999"),
    ("local.cert.port", "port", "10444"),
    ("alarm.msgalarmnoticehost", "host", "127.0.0.1"),
    ("alarm.msgalarmnoticeport", "port", ""),  # empty: service.smtp.port
    ("alarm.msgalarmnoticercpt", "string", "postmaster@localhost"),
    ("alarm.diskavail.msgalarmstatinterval", "integer", "3600"),
    ("alarm.diskavail.msgalarmthreshold", "integer", "10"),
    ("alarm.serverresponse.msgalarmstatinterval", "integer", "600"),
]


@pytest.mark.parametrize(("name", "kind", "default"), REQUIRED)
def test_required_parameter_has_type_and_default(name, kind, default):
    p = lookup(name)
    assert p is not None, name
    assert (p.name, p.type, p.default) == (name, kind, default)
    assert not p.is_pattern


@pytest.mark.parametrize(("name", "pattern"), [
    ("local.probe.imap.timeout", "local.probe.<svc>.timeout"),
    ("local.probe.lmtp.timeout", "local.probe.<svc>.timeout"),
    ("local.probe.pop.warningthreshold", "local.probe.<svc>.warningthreshold"),
    ("local.schedule.backup", "local.schedule.<task>"),
    ("local.schedule.t42", "local.schedule.<task>"),
    ("local.schedule.purge-old_mail", "local.schedule.<task>"),
    ("local.schedule.backup.enable", "local.schedule.<task>.enable"),
    ("local.imap.command", "local.<component>.command"),
    ("local.dispatcher.command", "local.<component>.command"),
    ("local.store.stoptimeout", "local.<component>.stoptimeout"),
    ("service.imap.numprocesses", "service.<svc>.numprocesses"),
])
def test_pattern_entry_matches_family_member(name, pattern):
    p = lookup(name)
    assert p is not None and p.name == pattern and p.is_pattern


@pytest.mark.parametrize("name", [
    "local.probe.nosuchsvc.timeout",  # <svc> is a closed list
    "local.nosuch.command",  # so is <component>
    "local.schedule.enable",  # <task> may not be the word "enable"
    "local.schedule.a b",  # nor contain a space
    "local.schedule.x.y",  # nor a dot
    "local.schedule.",
    "local.probe.imap",
    "local.defdomain.extra",
    "",
    "local",
])
def test_names_outside_the_catalogue_are_unknown(name):
    assert lookup(name) is None


def test_exact_entry_wins_over_pattern():
    assert lookup("local.schedule.msprobe").name == "local.schedule.msprobe"
    assert lookup("local.schedule.msprobe.enable").name == "local.schedule.msprobe.enable"


def test_every_default_parses_for_its_type():
    for p in catalogue.PARAMETERS:
        if p.default not in (None, ""):
            catalogue.parse(p, p.default)  # raises ValueError on a bad catalogue row


def test_every_row_is_complete():
    assert catalogue.PARAMETERS
    for p in catalogue.PARAMETERS:
        assert p.type in catalogue.TYPE_NAMES, p
        assert isinstance(p.refreshable, bool), p
        assert p.doc and "\n" not in p.doc, p
    assert len({p.name for p in catalogue.PARAMETERS}) == len(catalogue.PARAMETERS)


def test_refreshability_of_known_rows():
    assert lookup("local.autorestart").refreshable is True
    assert lookup("service.imap.port").refreshable is False


def test_parameter_is_immutable():
    with pytest.raises(AttributeError):
        lookup("local.autorestart").default = "yes"


@pytest.mark.parametrize(("typo", "hint"), [
    ("local.defdomian", "local.defdomain"),
    ("local.autorestrat", "local.autorestart"),
    ("service.imap.prot", "service.imap.port"),
    ("local.probe.imap.timout", "local.probe.imap.timeout"),
])
def test_suggest_closest_known_name(typo, hint):
    assert suggest(typo) == hint


def test_suggest_nothing_for_gibberish():
    assert suggest("zzzzqqqq") is None


def test_parse_uses_the_type_converter():
    assert catalogue.parse(lookup("local.autorestart"), "on") is True
    assert catalogue.parse(lookup("service.imap.port"), "143") == 143
    with pytest.raises(ValueError, match=r"^expected a boolean \(yes/no, on/off, 1/0\)$"):
        catalogue.parse(lookup("local.autorestart"), "maybe")


# -- issue 11: every port is a port, every count, size and duration has a range ------------
def test_every_parameter_that_names_a_port_is_of_a_port_type():
    for p in catalogue.PARAMETERS:
        last = p.name.rsplit(".", 1)[-1]
        if last.startswith("enable"):
            assert p.type == "boolean", p  # service.<svc>.enablesslport switches a listener on or off
        elif "port" in last:
            assert p.type in ("port", "port_or_off"), p


def test_metricsport_allows_0_for_off_and_nothing_outside_a_port():
    p = lookup("local.watcher.metricsport")
    assert catalogue.parse(p, "0") == 0 and catalogue.parse(p, "65535") == 65535
    for bad, message in (("70000", "port 70000 is out of range (1-65535, or 0 for off)"),
                         ("-1", "port -1 is out of range (1-65535, or 0 for off)")):
        with pytest.raises(ValueError) as e:
            catalogue.parse(p, bad)
        assert str(e.value) == message


def test_every_integer_and_duration_has_a_bounded_range():
    for p in catalogue.PARAMETERS:
        if p.type in ("integer", "duration"):
            assert p.lo is not None and p.hi is not None, p
            assert p.lo <= p.hi
            if p.default not in (None, ""):
                assert p.lo <= catalogue.parse(p, p.default) <= p.hi, p


@pytest.mark.parametrize(("name", "text", "message"), [
    ("service.pop.numprocesses", "99999999999999999999999999", "99999999999999999999999999 is out of range (1-256)"),
    ("service.imap.numprocesses", "0", "0 is out of range (1-256)"),
    ("service.readtimeout", "0", "0 is out of range (0.1-3600)"),
    ("local.probe.imap.timeout", "86400", "86400 is out of range (0.1-3600)"),
    ("local.autorestart.timeout", "0", "0 is out of range (1-31622400)"),
    ("alarm.diskavail.msgalarmthreshold", "101", "101 is out of range (0-100)"),
    ("local.probe.history.days", "0", "0 is out of range (1-3650)"),
])
def test_out_of_range_values_are_refused_with_the_range(name, text, message):
    with pytest.raises(ValueError) as e:
        catalogue.parse(lookup(name), text)
    assert str(e.value) == message


def test_range_bounds_are_inclusive():
    p = lookup("service.imap.numprocesses")
    assert (catalogue.parse(p, "1"), catalogue.parse(p, "256")) == (1, 256)


def test_describe_names_the_type_and_range():
    assert catalogue.describe(lookup("service.imap.numprocesses")) == "integer 1-256"
    assert catalogue.describe(lookup("service.readtimeout")) == "duration 0.1-3600"
    assert catalogue.describe(lookup("local.watcher.metricsport")) == "port_or_off"
    assert catalogue.describe(lookup("local.autorestart")) == "boolean"


def test_bare_seconds_schedule_only_for_msprobe():
    s = catalogue.parse(lookup("local.schedule.msprobe"), "600")
    assert (s.every, s.command) == (600, ("lib/msprobe",))
    with pytest.raises(ValueError, match="^a schedule needs a command after the seconds$"):
        catalogue.parse(lookup("local.schedule.backup"), "600")
