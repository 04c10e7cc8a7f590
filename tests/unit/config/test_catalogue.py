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
    ("local.schedule.msprobe", "schedule", "5,15,25,35,45,55 * * * * lib/msprobe"),
    ("local.schedule.msprobe.enable", "boolean", "yes"),
    ("local.probe.warningthreshold", "duration", "5"),
    ("service.readtimeout", "duration", "10"),
    ("local.queuedir", "string", ""),
    ("local.defdomain", "string", ""),
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
    ("alarm.msgalarmnoticehost", "string", "localhost"),
    ("alarm.msgalarmnoticeport", "port", "25"),
    ("alarm.msgalarmnoticercpt", "string", "Postmaster@localhost"),
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
