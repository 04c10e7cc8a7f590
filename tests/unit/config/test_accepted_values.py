"""Issue 11, the property behind "values that pass configutil but break the suite", in-process:
for every catalogue parameter (patterns instantiated), any text that configutil's checks accept
reads back through ConfigStore as a value of the parameter's type and inside its range; any other
text is refused with one line. The real `start-msg` runs on such values are in
tests/cli/test_configutil.py (test_accepted_extremes_let_start_msg_start_the_watcher).

What it covers: the checks of `configutil -o NAME -v VALUE` (rules.check_value and the cross-field
rule) against the typed reader every daemon uses (ConfigStore.value, get_int/get_float/...), with
generated values per type (numbers around and far outside each range, every boolean spelling,
host names, schedules) and arbitrary text for every parameter. What it does not: whether an
external `local.<component>.command` exists, or whether a port is free; those fail at start with
their own message.
"""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgsrv.config import catalogue, rules
from msgsrv.config.store import ConfigStore

INSTANCE = {"<svc>": "imap", "<component>": "store", "<task>": "backup"}
PY_TYPES = {"integer": int, "port": int, "port_or_off": int, "direction": int, "duration": (int, float),
            "boolean": bool, "string": str, "host": str, "readiness": str}


def instance(p: catalogue.Parameter) -> str:
    name = p.name
    for ph, v in INSTANCE.items():
        name = name.replace(ph, v)
    return name


NAMES = sorted({instance(p) for p in catalogue.PARAMETERS})


def numbers(p: catalogue.Parameter) -> st.SearchStrategy[str]:
    lo = p.lo if p.lo is not None else -70000
    hi = p.hi if p.hi is not None else 70000
    edges = [lo, hi, lo - 1, hi + 1, 0, -1, 10**26, -(10**26)]
    ints = st.one_of(st.sampled_from(edges), st.integers(int(lo) - 5, int(hi) + 5), st.integers())
    floats = st.floats(allow_nan=True, allow_infinity=True).map(repr)
    return st.one_of(ints.map(str), floats, st.sampled_from(["1e3", "1_000", " 7 ", "+5", "0x10", ".5", "5.", "-0"]))


def values_for(name: str) -> st.SearchStrategy[str]:
    p = catalogue.lookup(name)
    typed = {
        "boolean": st.sampled_from(["yes", "no", "on", "off", "1", "0", "true", "False", "YES", "maybe", "2"]),
        "host": st.one_of(st.sampled_from(["127.0.0.1", "::1", "mail.example.org", "bad host", "-x", "a..b"]),
                          st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True)),
        "schedule": st.sampled_from(["30 lib/x", "0 3 * * * lib/x", "600", "0.05 lib/x", "61 * * * * x", ""]),
        "readiness": st.sampled_from(["port", "started", " Started ", "PORT", "ready", "port started", "0"]),
        "probe_schedule": st.sampled_from(["600", "1", "30 lib/msprobe -q", "*/10 * * * * lib/msprobe", "0"]),
    }.get(p.type)
    if typed is None and p.type in ("integer", "port", "port_or_off", "duration", "direction"):
        typed = numbers(p)
    garbage = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
    return st.one_of(typed, garbage) if typed is not None else garbage


def accepted(name: str, text: str) -> bool:
    try:
        rules.validate_change({name: text}, [name])  # what `configutil -o NAME -v TEXT` checks
    except ValueError as e:
        assert "\n" not in str(e) and str(e)  # refused: one line
        return False
    return True


@pytest.mark.parametrize("name", NAMES)
def test_every_accepted_value_reads_back_typed_and_in_range(name, tmp_path_factory):
    p = catalogue.lookup(name)

    # 25 values a parameter (78 parameters) by default; MSGSRV_SOAK=1: 500
    @settings(max_examples=500 if os.environ.get("MSGSRV_SOAK") else 25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(text=values_for(name))
    def prop(text):
        if not accepted(name, text):
            return
        store = ConfigStore(tmp_path_factory.mktemp("v") / "msg.toml")
        store.update({name: text})
        v = ConfigStore(store.path).value(name)
        if text == "" and p.type != "string":
            assert v is None or v == catalogue.parse(p, p.default)  # empty: the default
            return
        if p.type in ("schedule", "probe_schedule"):
            assert v.command and (v.every is None or 0.1 <= v.every <= 366 * 86400)
            return
        assert isinstance(v, PY_TYPES[p.type]), (name, text, v)
        if isinstance(v, float):
            assert math.isfinite(v)
        if p.lo is not None:
            assert p.lo <= v <= p.hi, (name, text, v)
        if p.type == "port":
            assert 1 <= v <= 65535
        if p.type == "port_or_off":
            assert 0 <= v <= 65535
        if p.type == "string":
            assert v == text and "\x00" not in v

    prop()
