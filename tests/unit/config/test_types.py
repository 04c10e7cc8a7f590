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


@pytest.mark.parametrize("text", ["", "1.5", "ten", "0x10"])
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
])
def test_port_errors(text, message):
    with pytest.raises(ValueError) as e:
        types.to_port(text)
    assert str(e.value) == message


@pytest.mark.parametrize(("text", "value"), [("600", 600), ("0", 0), ("0.5", 0.5), ("10.0", 10)])
def test_duration(text, value):
    got = types.to_duration(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(("text", "message"), [
    ("-1", "expected a non-negative number of seconds"),
    ("nan", "expected a non-negative number of seconds"),
    ("inf", "expected a non-negative number of seconds"),
    ("10s", "expected a number of seconds"),
])
def test_duration_errors(text, message):
    with pytest.raises(ValueError) as e:
        types.to_duration(text)
    assert str(e.value) == message


def test_string_is_kept_verbatim():
    assert types.to_string("  a b  ") == "  a b  "


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
    assert set(types.CONVERTERS) == {"string", "integer", "boolean", "port", "duration", "schedule"}
