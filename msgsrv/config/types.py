"""Pure converters, one per parameter type. Each takes the stored text and returns the typed
value, or raises ValueError with a message that names what was expected.

Numbers are ASCII decimals only: Python's int() and float() also take `1_000`, `1e3`, `inf` and
other scripts' digits, which no other reader of the store (Dovecot's config, a shell script)
would read the same way. Ranges are not checked here but in catalogue.parse, from the row.
"""

from __future__ import annotations

TRUE = ("yes", "on", "1", "true")
FALSE = ("no", "off", "0", "false")
BOOLEAN_SPELLINGS = "yes/no, on/off, 1/0"
PORT_RANGE = "1-65535"

DIGITS = frozenset("0123456789")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"


# `re` is not imported on configutil's fast path: these two are plain character checks.
MAX_DIGITS = 4000  # int() refuses more than 4300 (CPython's guard against quadratic conversion)


def _is_integer(t: str) -> bool:
    body = t[1:] if t[:1] in ("+", "-") else t
    return 0 < len(body) <= MAX_DIGITS and set(body) <= DIGITS


def _is_decimal(t: str) -> bool:
    body = t[1:] if t[:1] in ("+", "-") else t
    whole, _, frac = body.partition(".")
    return 0 < len(whole) + len(frac) <= MAX_DIGITS and set(whole) <= DIGITS and set(frac) <= DIGITS


def to_string(text: str) -> str:
    if "\x00" in text:  # no C string (argv, a path, a header) can carry it
        raise ValueError("a value cannot contain a NUL character")
    return text


def to_integer(text: str) -> int:
    t = text.strip()
    if not _is_integer(t):
        raise ValueError("expected an integer")
    return int(t, 10)


def to_boolean(text: str) -> bool:
    t = text.strip().lower()
    if t in TRUE:
        return True
    if t in FALSE:
        return False
    raise ValueError(f"expected a boolean ({BOOLEAN_SPELLINGS})")


def _port(text: str, lowest: int, expected: str, out_of_range: str) -> int:
    t = text.strip()
    if not _is_integer(t):
        raise ValueError(f"expected {expected}")
    n = int(t, 10)
    if not lowest <= n <= 65535:
        raise ValueError(f"port {n} is out of range ({out_of_range})")
    return n


def to_port(text: str) -> int:
    return _port(text, 1, f"a port number ({PORT_RANGE})", PORT_RANGE)


def to_port_or_off(text: str) -> int:
    """A port, or 0 for "off" (local.watcher.metricsport)."""
    return _port(text, 0, f"a port number ({PORT_RANGE}) or 0 (off)", f"{PORT_RANGE}, or 0 for off")


def to_duration(text: str) -> int | float:
    """Seconds, a non-negative decimal number (`0.5` allowed, `1e3` and `inf` not)."""
    t = text.strip()
    if not _is_decimal(t):
        raise ValueError("expected a number of seconds")
    n = float(t)
    if n < 0:
        raise ValueError("expected a non-negative number of seconds")
    if n == float("inf"):  # 400 digits
        raise ValueError("expected a number of seconds")
    return int(n) if n == int(n) else n


def to_direction(text: str) -> int:
    """The side of an alarm threshold: -1 alarms below it, 1 above it."""
    t = text.strip()
    if t not in ("-1", "1", "+1"):
        raise ValueError("expected -1 (alarm below the threshold) or 1 (above)")
    return int(t)


READINESS = ("port", "started")


def to_readiness(text: str) -> str:
    """When a started external command counts as RUNNING: `port` (its port accepts) or `started`."""
    t = text.strip().lower()
    if t not in READINESS:
        raise ValueError("expected port or started")
    return t


def to_host(text: str) -> str:
    """An IPv4 or IPv6 address or a DNS host name."""
    import ipaddress
    import re

    t = text.strip()
    try:
        ipaddress.ip_address(t)
        return t
    except ValueError:
        pass
    if len(t) <= 253 and re.fullmatch(rf"{_LABEL}(\.{_LABEL})*\.?", t, re.ASCII) and not t.replace(".", "").isdigit():
        return t
    raise ValueError("expected an IP address or a host name")


def to_schedule(text: str):
    """`min hour dom month dow command...` or `SECONDS command...` -> sched.cron.Schedule."""
    from msgsrv.sched.cron import parse  # croniter is imported only when a schedule is parsed

    return parse(text)


def to_probe_schedule(text: str):
    """A schedule whose command may be left out: `600` means `600 lib/msprobe` (the seed's
    "every 600 seconds")."""
    from msgsrv.sched.cron import PROBE_COMMAND, parse

    return parse(text, default_command=PROBE_COMMAND)


CONVERTERS = {
    "string": to_string,
    "integer": to_integer,
    "boolean": to_boolean,
    "port": to_port,
    "port_or_off": to_port_or_off,
    "duration": to_duration,
    "direction": to_direction,
    "readiness": to_readiness,
    "host": to_host,
    "schedule": to_schedule,
    "probe_schedule": to_probe_schedule,
}


def convert(kind: str, text: str):
    return CONVERTERS[kind](text)
