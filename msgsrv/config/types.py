"""Pure converters, one per parameter type. Each takes the stored text and returns the typed
value, or raises ValueError with a message that names what was expected."""

from __future__ import annotations

TRUE = ("yes", "on", "1", "true")
FALSE = ("no", "off", "0", "false")
BOOLEAN_SPELLINGS = "yes/no, on/off, 1/0"


def to_string(text: str) -> str:
    return text


def to_integer(text: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise ValueError("expected an integer") from None


def to_boolean(text: str) -> bool:
    t = text.strip().lower()
    if t in TRUE:
        return True
    if t in FALSE:
        return False
    raise ValueError(f"expected a boolean ({BOOLEAN_SPELLINGS})")


def to_port(text: str) -> int:
    try:
        n = int(text.strip(), 10)
    except ValueError:
        raise ValueError("expected a port number (1-65535)") from None
    if not 1 <= n <= 65535:
        raise ValueError(f"port {n} is out of range (1-65535)")
    return n


def to_duration(text: str) -> float:
    """Seconds, a non-negative number (decimals allowed: `0.5`)."""
    try:
        n = float(text.strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if n != n or n < 0 or n == float("inf"):
        raise ValueError("expected a non-negative number of seconds")
    return int(n) if n == int(n) else n


def to_schedule(text: str):
    """`min hour dom month dow command...` or `SECONDS command...` -> sched.cron.Schedule."""
    from msgsrv.sched.cron import parse  # croniter is imported only when a schedule is parsed

    return parse(text)


CONVERTERS = {
    "string": to_string,
    "integer": to_integer,
    "boolean": to_boolean,
    "port": to_port,
    "duration": to_duration,
    "schedule": to_schedule,
}


def convert(kind: str, text: str):
    return CONVERTERS[kind](text)
