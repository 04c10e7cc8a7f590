"""Setting one parameter in a simple store without a TOML library: configutil's fast `-v` path.

`configutil -o NAME -v VALUE` is what admins and scripts run most; importing click and tomlkit
costs it twice a bare interpreter's start-up (issue 14). Most stores are what configutil itself
writes: one `"full.dotted.name" = value` per line, blank lines and `#` comments between them.
For such a store the edit is a line edit, and this module does it:

    "local.autorestart" = "no"   # until the probes are tuned     ->  "yes" replaces "no" only
    (a name not in the file)                                        ->  appended before the
                                                                        trailing blank lines

which is byte for byte what tomlkit writes for the same change (tests/unit/config/
test_quickedit.py compares the two on generated stores). Under the same lock, with the same
atomic write, leftover clean-up and derived cache as ConfigStore.update.

Anything else gives up before writing (returns False) and the caller takes the full path: a
table or dotted key, a literal or multi-line string, an escape, a boolean or float written by
hand, a name twice, a file without a final newline, a value that needs escaping, a schedule
(croniter) or a parameter of the cross-field rule.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from msgsrv.atomicfile import locked, write_atomic
from msgsrv.config import catalogue
from msgsrv.config.store import INTEGER_TYPES, ConfigStore, cache_path, lock_path

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
DIGITS = frozenset("0123456789")
SLOW_TYPES = ("schedule", "probe_schedule")  # parsing one imports croniter
CROSS_FIELD = ("local.autorestart.timeout", "local.schedule.msprobe", "local.schedule.msprobe.enable")


def toml_value(param: catalogue.Parameter, text: str) -> str | None:
    """VALUE as TOML, as ConfigStore would store it; None when it would need escapes."""
    if param.type in INTEGER_TYPES and text.strip():
        return str(int(text.strip(), 10))
    if '"' in text or "\\" in text or not text.isprintable():
        return None
    return f'"{text}"'


def _split(line: str) -> tuple[str, str, str] | None:
    """(name, value token, rest) of a `"name" = value  # comment` line, or None."""
    if not line.startswith('"'):
        return None
    end = line.find('"', 1)
    name = line[1:end]
    if end < 2 or not set(name) <= NAME_CHARS:
        return None
    i = end + 1
    while line[i:i + 1] in (" ", "\t"):
        i += 1
    if line[i:i + 1] != "=":
        return None
    i += 1
    while line[i:i + 1] in (" ", "\t"):
        i += 1
    head = i
    if line[i:i + 1] == '"':
        close = line.find('"', i + 1)
        if close < 0:
            return None
        token = line[i:close + 1]
        inner = token[1:-1]
        if "\\" in inner or not inner.isprintable():
            return None
        i = close + 1
    else:
        j = i + 1 if line[i:i + 1] == "-" else i
        while line[j:j + 1] in DIGITS:
            j += 1
        token = line[i:j]
        if j == i or not set(token.lstrip("-")) <= DIGITS or not token.lstrip("-") or \
                (len(token.lstrip("-")) > 1 and token.lstrip("-")[0] == "0"):
            return None
        i = j
    rest = line[i:]
    trail = rest.lstrip(" \t")
    if trail and not trail.startswith("#"):
        return None
    return name, token, line[:head] + "\0" + rest  # \0 marks where the token goes


def _value_text(token: str) -> str:
    return token[1:-1] if token.startswith('"') else str(int(token))


def plan(text: str, name: str, value: str) -> tuple[str, dict[str, str]] | None:
    """(new text, every value after the change) for setting NAME to the TOML VALUE, or None when
    TEXT is not a simple store."""
    if text and not text.endswith("\n"):
        return None
    lines = text.split("\n")[:-1] if text else []
    values: dict[str, str] = {}
    where = None
    for n, line in enumerate(lines):
        if line == "":
            continue
        if line.startswith("#"):
            if not all(ch == "\t" or ch.isprintable() for ch in line):
                return None  # a control character: not TOML, let tomlkit say so
            continue
        parts = _split(line)
        if parts is None or parts[0] in values:
            return None
        values[parts[0]] = _value_text(parts[1])
        if parts[0] == name:
            where = (n, parts[2])
    if where is not None:
        n, template = where
        lines[n] = template.replace("\0", value, 1)
    else:
        k = len(lines)
        while k > 0 and lines[k - 1] == "":  # tomlkit puts a new key before trailing blank lines
            k -= 1
        lines.insert(k, f'"{name}" = {value}')
    values[name] = _value_text(value)
    return "".join(line + "\n" for line in lines), values


def set_simple(path: Path, name: str, text: str) -> bool:
    """Set NAME to TEXT (already checked by the caller) when the store is simple; False when the
    full path must do it (nothing written then)."""
    param = catalogue.lookup(name)
    if param is None or param.type in SLOW_TYPES or name in CROSS_FIELD:
        return False
    value = toml_value(param, text)
    if value is None:
        return False
    try:
        with locked(lock_path(path)):
            try:
                old = path.read_bytes().decode("utf-8")
            except FileNotFoundError:
                old = ""
            done = plan(old, name, value)
            if done is None:
                return False
            new, values = done
            ConfigStore(path)._remove_leftovers()
            write_atomic(path, new, follow_symlinks=True)
            try:
                data = json.dumps({"text": new, "values": values}, separators=(",", ":"))
                write_atomic(cache_path(path), data)
            except OSError:
                pass  # a read-only config dir for the cache only: readers parse instead
    except (OSError, UnicodeDecodeError):
        return False  # the full path says what is wrong, in the admin's words
    return True


def ensure_parent(path: Path) -> bool:
    """The store's directory exists (or was made, owner-only); False when it cannot be."""
    try:
        os.makedirs(path.parent, mode=0o700, exist_ok=True)
        return True
    except OSError:
        return False
