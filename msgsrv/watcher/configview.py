"""The watcher's reading of config/msg.toml: a file that does not parse never disarms it.

SPEC §4 "Nothing is forgotten": a config file that does not parse never stops supervision, the last
good configuration stays in force. ConfigView re-reads the file when asked (every event, operation
and status, so `configutil` changes count at once), parses it only when its bytes changed, and on a
StoreError keeps the last configuration that parsed and reports the problem once (and once more
when the file parses again). The last good overrides also live in data/run/supervision.json, so a
new watcher that starts while the file is broken supervises with them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from msgsrv import messages as M
from msgsrv.config.store import ConfigStore, StoreError, reason


class Settings(ConfigStore):
    """A frozen set of overrides with ConfigStore's typed getters (defaults from the catalogue)."""

    def __init__(self, path: Path, overrides: dict[str, str]):
        super().__init__(path)
        self._frozen = dict(overrides)

    def overrides(self) -> dict[str, str]:
        return self._frozen

    def refresh(self) -> None:
        """Frozen: ConfigView makes a new Settings when the file changes."""


class ConfigView:
    def __init__(self, path: Path, report: Callable[[str, bool], None] | None = None,
                 seed: dict[str, str] | None = None):
        """REPORT(line, broken) is called once when the file stops parsing and once when it parses
        again. SEED: the last good overrides, used until the file parses (a new watcher)."""
        self.path = Path(path)
        self.report = report or (lambda line, broken: None)
        self.current = Settings(self.path, seed or {})
        self.broken: str | None = None
        self.good = seed is not None  # a configuration that parsed is in force (the file's or saved)
        self._seen: bytes | None = None

    def refresh(self) -> Settings:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as e:
            self._broken(f"unable to read {self.path}: {reason(e, self.path)}")
            return self.current
        if data == self._seen:
            return self.current
        try:
            overrides = ConfigStore(self.path).overrides() if data else {}
        except StoreError as e:
            self._seen = data
            self._broken(str(e))
            return self.current
        self._seen = data
        self.current = Settings(self.path, overrides)
        self.good = True
        if self.broken is not None:
            self.broken = None
            self.report(M.CONFIG_FIXED.format(path=self.path), False)
        return self.current

    def _broken(self, reason: str) -> None:
        if self.broken != reason:
            self.broken = reason
            self.report(M.CONFIG_BROKEN.format(reason=reason), True)

    def overrides(self) -> dict[str, str]:
        return self.current.overrides()

    # -- typed reads of the configuration in force (call refresh() first to follow the file) --
    def get_bool(self, name: str) -> bool:
        return self.current.get_bool(name)

    def get_int(self, name: str, default: int = 0) -> int:
        return self.current.get_int(name, default)

    def get_float(self, name: str, default: float = 0.0) -> float:
        return self.current.get_float(name, default)

    def get_str(self, name: str, default: str = "") -> str:
        return self.current.get_str(name, default)

    def built_in(self, c: str) -> bool:
        """C runs its built-in server (no `local.<c>.command`), which reads config/msg.toml itself."""
        return not self.current.get_str(f"local.{c}.command", "").strip()
