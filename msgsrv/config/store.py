"""ConfigStore: the overrides in config/msg.toml, edited with tomlkit so hand-written comments,
order and layout survive. Full dotted names are quoted keys ("local.autorestart" = "yes").

Every write: exclusive flock on msg.toml.lock, read, apply, validate, temp file, fsync, rename.
After each write a derived cache (`.msg.toml.cache`, JSON) is written with the stat identity of
the TOML file it was made from; the `configutil -o NAME` fast path trusts it only while that
identity still matches, so it is never stale.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

from msgsrv.atomicfile import locked, write_atomic
from msgsrv.config import catalogue


class StoreError(Exception):
    """The store file cannot be read or parsed."""


def _text(value) -> str:
    """A TOML value (hand-written ones may be any type) as configutil text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    return str(value)


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def cache_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.cache")


def lock_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.lock")


class ConfigStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._overrides: dict[str, str] | None = None
        self._identity: list[int] | None = None  # stat identity of the file last read

    # -- reading ---------------------------------------------------------------
    def _read_doc(self):
        import tomlkit

        try:
            with open(self.path, "rb") as f:
                self._identity = _identity(os.fstat(f.fileno()))
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            self._identity = None
            return tomlkit.document()
        except UnicodeDecodeError:
            raise StoreError(f"unable to parse {self.path}: not UTF-8 text") from None
        except OSError as e:
            raise StoreError(f"unable to read {self.path}: {e.strerror}") from None
        try:
            return tomlkit.parse(text)
        except Exception as e:  # tomlkit raises its own ParseError family
            raise StoreError(f"unable to parse {self.path}: {e}") from None

    @staticmethod
    def _flatten(doc) -> dict[str, str]:
        out: dict[str, str] = {}

        def walk(prefix: str, table) -> None:
            for k, v in table.items():
                name = f"{prefix}{k}"
                if hasattr(v, "items") and not isinstance(v, str):
                    walk(name + ".", v)
                else:
                    out[name] = _text(v.unwrap() if hasattr(v, "unwrap") else v)

        walk("", doc)
        return out

    def overrides(self) -> dict[str, str]:
        """Every stored override as name -> text."""
        if self._overrides is None:
            self._overrides = self._flatten(self._read_doc())
            self._write_cache_quietly()
        return self._overrides

    def get_text(self, name: str) -> str | None:
        return self.overrides().get(name)

    def effective_text(self, name: str) -> str | None:
        """Override, else the catalogue default (None when neither exists)."""
        v = self.get_text(name)
        if v is not None:
            return v
        p = catalogue.lookup(name)
        return p.default if p else None

    def value(self, name: str, default=None):
        """Typed effective value; a stored value that does not parse falls back to the default."""
        p = catalogue.lookup(name)
        text = self.effective_text(name)
        if p is None or text is None or (text == "" and p.type != "string"):
            return default
        try:
            return catalogue.parse(p, text)
        except ValueError:
            if p.default is None or p.default == "" and p.type != "string":
                return default
            return catalogue.parse(p, p.default)

    def get_bool(self, name: str) -> bool:
        return bool(self.value(name, False))

    def get_int(self, name: str, default: int = 0) -> int:
        v = self.value(name, default)
        return int(v)

    def get_float(self, name: str, default: float = 0.0) -> float:
        v = self.value(name, default)
        return float(v)

    def get_str(self, name: str, default: str = "") -> str:
        v = self.value(name, default)
        return str(v)

    def refresh(self) -> None:
        self._overrides = None

    # -- writing -----------------------------------------------------------------
    def update(self, sets: dict[str, str] | None = None, deletes: Iterable[str] = (),
               validate: Callable[[dict[str, str]], None] | None = None) -> None:
        """Apply SETS and DELETES in one locked, atomic write.

        VALIDATE gets the overrides as they would be afterwards and raises to refuse the change;
        nothing is written then.
        """
        import tomlkit

        sets = dict(sets or {})
        deletes = list(deletes)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked(lock_path(self.path)):
            doc = self._read_doc()
            before = self._flatten(doc)
            after = dict(before)
            for n in deletes:
                after.pop(n, None)
            after.update(sets)
            if validate is not None:
                validate(after)
            for n in deletes:
                if n in doc:
                    del doc[n]
            for n, text in sets.items():
                doc[n] = self._toml_value(n, text)
            write_atomic(self.path, tomlkit.dumps(doc))
            self._overrides = self._flatten(doc)
            self._identity = _identity(os.stat(self.path))  # still under the lock: our file
            self._write_cache()

    @staticmethod
    def _toml_value(name: str, text: str):
        """Integers and ports are stored as TOML integers, everything else as the text given."""
        p = catalogue.lookup(name)
        if p is not None and p.type in ("integer", "port"):
            try:
                return int(text.strip(), 10)
            except ValueError:
                pass
        return text

    def _write_cache(self) -> None:
        if self._identity is None:
            return
        data = json.dumps({"id": self._identity, "values": self._overrides}, separators=(",", ":"))
        write_atomic(cache_path(self.path), data)

    def _write_cache_quietly(self) -> None:
        try:
            self._write_cache()
        except OSError:
            pass  # a read-only config dir: the fast path falls back to parsing


def cached_get(path: Path, name: str) -> tuple[bool, str | None]:
    """Fast path: (True, value-or-None) if the derived cache matches the file, else (False, None)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return True, None
    except OSError:
        return False, None
    try:
        with open(cache_path(path), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return False, None
    if data.get("id") != _identity(st):
        return False, None
    return True, data["values"].get(name)
