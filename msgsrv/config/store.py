"""ConfigStore: the overrides in config/msg.toml, edited with tomlkit so hand-written comments,
order and layout survive. Full dotted names are quoted keys ("local.autorestart" = "yes"); a
hand-written dotted key or [table] holding the same name is changed or removed in place.

Every write: exclusive flock on msg.toml.lock, read, apply, validate, temp file, fsync, rename.
Every read and write also leaves a derived cache (`.msg.toml.cache`, JSON) holding the exact TOML
text it was made from and the values parsed from it. The `configutil -o NAME` fast path reads both
files and trusts the cache only when that text equals the file's current contents, byte for byte,
so it is never stale: not after a hand edit of the same size, nor one inside the same timestamp
tick (a stat identity of mtime/size/inode can miss those on coarse-timestamp filesystems).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from msgsrv.atomicfile import locked, write_atomic
from msgsrv.config import catalogue
from msgsrv.errors import OperationFailed, os_reason


class StoreError(OperationFailed):
    """The store file cannot be read or parsed (a command that does not handle it says its one
    line and exits 1)."""


def _text(value) -> str:
    """A TOML value (hand-written ones may be any type) as configutil text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    return str(value)


def _is_table(item) -> bool:
    return hasattr(item, "items") and not isinstance(item, str)


def _locate(table, name: str) -> list[tuple[object, str]]:
    """Every (container, key) that holds NAME: the quoted key, dotted keys, [tables]."""
    found = []
    for key in list(table.keys()):
        if key == name:
            found.append((table, key))
        elif name.startswith(key + ".") and _is_table(table[key]):
            found += _locate(table[key], name[len(key) + 1:])
    return found


def cache_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.cache")


def lock_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.lock")


def _one_line(message: str) -> str:
    return " ".join(message.split())


def reason(e: OSError, path: Path | None = None) -> str:
    """`read-only file system`, `permission denied`, `/srv/msgsrv is not a directory`: the
    errno text as an admin says it."""
    if path is not None and isinstance(e, (NotADirectoryError, FileExistsError)):
        for p in Path(path).parents:
            if p.exists() and not p.is_dir():
                return f"{p} is not a directory"
    return os_reason(e)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: someone else's live process
    return True


INTEGER_TYPES = ("integer", "port", "port_or_off", "direction")


class ConfigStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._overrides: dict[str, str] | None = None
        self._text: str | None = None  # the TOML text last read or written; None = no file

    # -- reading ---------------------------------------------------------------
    def _read_doc(self):
        import tomlkit

        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            self._text = None
            return tomlkit.document()
        except OSError as e:
            raise StoreError(f"unable to read {self.path}: {reason(e, self.path)}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise StoreError(f"unable to parse {self.path}: not UTF-8 text") from None
        try:
            doc = tomlkit.parse(text)
        except Exception as e:  # tomlkit raises its own ParseError family
            raise StoreError(_one_line(f"unable to parse {self.path}: {e}")) from None
        self._text = text
        return doc

    @staticmethod
    def _flatten(doc) -> dict[str, str]:
        out: dict[str, str] = {}

        def walk(prefix: str, table) -> None:
            for k, v in table.items():
                name = f"{prefix}{k}"
                if _is_table(v):
                    walk(name + ".", v)
                else:
                    out[name] = _text(v.unwrap() if hasattr(v, "unwrap") else v)

        walk("", doc)
        return out

    def overrides(self) -> dict[str, str]:
        """Every stored override as name -> text.

        When the derived cache was made from the file's current text, its values are used and
        tomlkit is not even imported: the watcher and imsched read the store on every operation
        and every probe pass, and a parse costs milliseconds of CPU each time."""
        if self._overrides is None:
            data = self._read_bytes()
            if data is None:  # no file: no override (what an empty document says, without tomlkit)
                self._text, self._overrides = None, {}
                return self._overrides
            values = _load_cache(self.path, data)
            if values is not None and all(isinstance(v, str) for v in values.values()):
                self._text, self._overrides = data.decode("utf-8"), values
                return self._overrides
            self._overrides = self._flatten(self._read_doc())
            if self._text is not None:
                self._write_cache_quietly()
        return self._overrides

    def _read_bytes(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"unable to read {self.path}: {reason(e, self.path)}") from None

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
    def update(self, sets: dict[str, str] | None = None, deletes=(), validate=None) -> None:
        """Apply SETS (name -> text) and DELETES (names) in one locked, atomic write.

        VALIDATE gets the overrides as they would be afterwards and raises to refuse the change;
        nothing is written then. A store that is a symbolic link is written through: the link's
        target is replaced atomically and the link stays. StoreError (one line, in the admin's
        words) when the file cannot be written.
        """
        sets = dict(sets or {})
        deletes = list(deletes)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with locked(lock_path(self.path)):
                self._update_locked(sets, deletes, validate)
        except OSError as e:
            raise StoreError(f"cannot write {self.path}: {reason(e, self.path)}") from None

    def _update_locked(self, sets: dict[str, str], deletes: list[str], validate) -> None:
        import tomlkit

        self._remove_leftovers()
        doc = self._read_doc()
        after = self._flatten(doc)
        for n in deletes:
            after.pop(n, None)
        after.update(sets)
        if validate is not None:
            validate(after)
        for n in deletes:
            for table, key in _locate(doc, n):
                del table[key]
        for n, text in sets.items():
            where = _locate(doc, n)
            for table, key in where[1:]:  # a hand-written duplicate would shadow the new value
                del table[key]
            table, key = where[0] if where else (doc, n)
            table[key] = self._toml_value(n, text)
        text = tomlkit.dumps(doc)
        write_atomic(self.path, text, follow_symlinks=True)
        self._text = text
        self._overrides = self._flatten(doc)
        self._write_cache_quietly()

    def _remove_leftovers(self) -> None:
        """Temp files of writers killed mid-write: `.msg.toml.PID.tmp` (next to the store, or to
        its target when it is a link) and `..msg.toml.cache.PID.tmp`. We hold the lock, so no
        store writer runs; a reader that is rebuilding the cache may, so only temporaries whose
        PID is gone are removed."""
        target = Path(os.path.realpath(self.path))
        for directory, name in {(self.path.parent, self.path.name), (target.parent, target.name),
                                (self.path.parent, cache_path(self.path).name)}:
            prefix = f".{name}."
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for entry in names:
                pid = entry[len(prefix):-4]
                if entry.startswith(prefix) and entry.endswith(".tmp") and pid.isdigit() and not _alive(int(pid)):
                    with contextlib.suppress(OSError):
                        os.unlink(directory / entry)

    @staticmethod
    def _toml_value(name: str, text: str):
        """Integers and ports are stored as TOML integers, everything else as the text given."""
        p = catalogue.lookup(name)
        if p is not None and p.type in INTEGER_TYPES:
            try:
                return int(text.strip(), 10)
            except ValueError:
                pass
        return text

    def _write_cache(self) -> None:
        if self._text is None:
            return
        data = json.dumps({"text": self._text, "values": self._overrides}, separators=(",", ":"))
        write_atomic(cache_path(self.path), data)

    def _write_cache_quietly(self) -> None:
        try:
            self._write_cache()
        except OSError:
            pass  # a read-only config dir: the fast path falls back to parsing


def _load_cache(path: Path, text: bytes) -> dict | None:
    """The cached values when the cache was made from TEXT, else None."""
    try:
        with open(cache_path(path), "rb") as f:
            data = json.loads(f.read())
        if data["text"].encode("utf-8") != text or not isinstance(data["values"], dict):
            return None
        return data["values"]
    except (OSError, ValueError, LookupError, TypeError, AttributeError):
        return None  # missing, half-known or hand-damaged cache: parse instead


def cached_get(path: Path, name: str) -> tuple[bool, str | None]:
    """Fast path: (True, value-or-None) when the derived cache was made from the file's current
    text, else (False, None) and the caller parses the file."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return True, None
    except OSError:
        return False, None
    values = _load_cache(path, text)
    if values is None:
        return False, None
    value = values.get(name)
    return True, value if isinstance(value, str) else None
