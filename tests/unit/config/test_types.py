"""msgsrv/config/types.py: one pure converter per parameter type."""

from __future__ import annotations

import pytest

from msgsrv.config import types


@pytest.mark.parametrize(("text", "value"), [
    ("yes", True), ("no", False), ("on", True), ("off", False), ("1", True), ("0", False),
    ("true", True), ("false", False), ("YES", True), ("Off", False), (" yes ", True),
])
def test_boolean_spellings(text, value):
    assert types.to_boolean(text) is value


@pytest.mark.parametrize("text", ["maybe", "", "2", "y", "enabled"])
def test_boolean_error_lists_the_spellings(text):
    with pytest.raises(ValueError) as e:
        types.to_boolean(text)
    assert str(e.value) == "expected a boolean (yes/no, on/off, 1/0)"


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("42", 42), ("-1", -1), ("+7", 7), (" 3 ", 3)])
def test_integer(text, value):
    assert types.to_integer(text) == value


@pytest.mark.parametrize("text", ["", "1.5", "ten", "0x10", "1_000", "\u0663", "1e3", "+", "9" * 4001])
def test_integer_error(text):
    with pytest.raises(ValueError, match="^expected an integer$"):
        types.to_integer(text)


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("143", 143), ("65535", 65535)])
def test_port_in_range(text, value):
    assert types.to_port(text) == value


@pytest.mark.parametrize(("text", "message"), [
    ("0", "port 0 is out of range (1-65535)"),
    ("65536", "port 65536 is out of range (1-65535)"),
    ("-25", "port -25 is out of range (1-65535)"),
    ("http", "expected a port number (1-65535)"),
    ("1_0", "expected a port number (1-65535)"),
])
def test_port_errors(text, message):
    with pytest.raises(ValueError) as e:
        types.to_port(text)
    assert str(e.value) == message


@pytest.mark.parametrize(("text", "value"), [("600", 600), ("0", 0), ("0.5", 0.5), ("10.0", 10), (".5", 0.5),
                                             ("5.", 5)])
def test_duration(text, value):
    got = types.to_duration(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(("text", "message"), [
    ("-1", "expected a non-negative number of seconds"),
    ("nan", "expected a number of seconds"),
    ("inf", "expected a number of seconds"),
    ("1e3", "expected a number of seconds"),
    ("9" * 400, "expected a number of seconds"),
    ("10s", "expected a number of seconds"),
    (".", "expected a number of seconds"),
])
def test_duration_errors(text, message):
    with pytest.raises(ValueError) as e:
        types.to_duration(text)
    assert str(e.value) == message


def test_string_is_kept_verbatim():
    assert types.to_string("  a b  ") == "  a b  "
    assert types.to_string("line 1\nline 2\t\u2028") == "line 1\nline 2\t\u2028"


def test_string_refuses_nul():
    with pytest.raises(ValueError, match="^a value cannot contain a NUL character$"):
        types.to_string("a\x00b")


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("9464", 9464), ("65535", 65535)])
def test_port_or_off(text, value):
    assert types.to_port_or_off(text) == value


@pytest.mark.parametrize("text", ["-1", "65536", "x"])
def test_port_or_off_errors(text):
    with pytest.raises(ValueError):
        types.to_port_or_off(text)


def test_direction():
    assert (types.to_direction("-1"), types.to_direction("1"), types.to_direction("+1")) == (-1, 1, 1)
    with pytest.raises(ValueError, match=r"^expected -1 \(alarm below the threshold\) or 1 \(above\)$"):
        types.to_direction("0")


@pytest.mark.parametrize("text", ["127.0.0.1", "::1", "0.0.0.0", "mail.example.org", "localhost", "a-b.c."])
def test_host(text):
    assert types.to_host(text) == text


@pytest.mark.parametrize("text", ["a b", "-x.org", "x..org", "999.1.1.1", "a/b", "*", "x" * 64 + ".org"])
def test_host_errors(text):
    with pytest.raises(ValueError, match="^expected an IP address or a host name$"):
        types.to_host(text)


def test_schedule_crontab_and_command():
    s = types.to_schedule("5,15,25,35,45,55 * * * * lib/msprobe -v")
    assert s.cron == "5,15,25,35,45,55 * * * *"
    assert s.command == ("lib/msprobe", "-v")
    assert s.every is None


def test_schedule_seconds_and_command():
    s = types.to_schedule("30 lib/msprobe")
    assert (s.every, s.command, s.cron) == (30, ("lib/msprobe",), None)


@pytest.mark.parametrize(("text", "message"), [
    ("", "expected a schedule: 5 crontab fields and a command, or seconds and a command"),
    ("every ten minutes", "expected 5 crontab fields and a command (min hour dom month dow command), "
                          "or seconds and a command"),
    ("*/10 * * * *", "expected 5 crontab fields and a command (min hour dom month dow command), "
                     "or seconds and a command"),
    ("30", "a schedule needs a command after the seconds"),
    ("0 lib/msprobe", "a schedule in seconds must be a positive number"),
    ("0.01 lib/msprobe", "a schedule in seconds must be from 0.1 to 31622400 seconds"),
    ("-5 lib/msprobe", "a schedule in seconds must be a positive number"),
    ("61 * * * * lib/msprobe", "invalid crontab fields '61 * * * *'"),
    ("* * * 13 * lib/msprobe", "invalid crontab fields '* * * 13 *'"),
])
def test_schedule_errors(text, message):
    with pytest.raises(ValueError) as e:
        types.to_schedule(text)
    assert str(e.value) == message


def test_convert_dispatches_by_type_name():
    assert types.convert("port", "25") == 25
    assert set(types.CONVERTERS) == {"string", "integer", "boolean", "port", "port_or_off", "duration", "direction",
                                     "readiness", "host", "schedule", "probe_schedule"}


def test_probe_schedule_may_leave_the_command_out():
    s = types.to_probe_schedule("600")
    assert (s.every, s.command, s.text) == (600, ("lib/msprobe",), "600")
    assert types.to_probe_schedule("30 lib/msprobe -q imap").command == ("lib/msprobe", "-q", "imap")
