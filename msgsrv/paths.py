"""ServerRoot: the one place that knows the layout under the server root (SPEC §3).

    $MSGSRV_BASE (else ~/.local/share/msgsrv)
      config/msg.toml         the config store (overrides only)
      data/log/watcher        watcher log, append-only
      data/log/default        default log
      data/run/               pid files, control token, lock files
      data/store/             mailboxes
      data/queue/             MTA queue
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def default_base() -> Path:
    env = os.environ.get("MSGSRV_BASE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".local" / "share" / "msgsrv"


class ServerRoot:
    """The server root at BASE; immutable, compared and hashed by BASE. A plain class, not a
    frozen dataclass: `import dataclasses` costs configutil's fast path ~5 ms of its start-up."""

    __slots__ = ("base",)

    def __init__(self, base: Path):
        object.__setattr__(self, "base", base)

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def __eq__(self, other) -> bool:
        return isinstance(other, ServerRoot) and other.base == self.base

    def __hash__(self) -> int:
        return hash(self.base)

    def __repr__(self) -> str:
        return f"ServerRoot(base={self.base!r})"

    @classmethod
    def from_env(cls) -> ServerRoot:
        return cls(default_base().absolute())

    # -- the layout ------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        return self.base / "config"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "msg.toml"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def watcher_log(self) -> Path:
        return self.log_dir / "watcher"

    @property
    def default_log(self) -> Path:
        return self.log_dir / "default"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def queue_dir(self) -> Path:
        return self.data_dir / "queue"

    @property
    def users_file(self) -> Path:
        return self.config_dir / "users.toml"

    @property
    def token_file(self) -> Path:
        return self.run_dir / "watcher.token"

    @property
    def watcher_lock(self) -> Path:
        return self.run_dir / "watcher.lock"

    @property
    def watcher_state(self) -> Path:
        return self.run_dir / "watcher.json"

    @property
    def history_db(self) -> Path:
        return self.data_dir / "counters.sqlite"

    def pid_file(self, component: str) -> Path:
        return self.run_dir / f"{component}.pid"

    def fault_file(self, component: str) -> Path:
        return self.run_dir / f"fault.{component}"

    def component_log(self, name: str) -> Path:
        return self.log_dir / name

    # -- creation ----------------------------------------------------------
    def ensure(self) -> ServerRoot:
        """Create the layout with owner-only permissions (idempotent).

        OperationFailed, one line in the admin's words, when it cannot be made: `cannot create
        /srv/msgsrv/config: /srv/msgsrv is not a directory`, `...: read-only file system`."""
        old = os.umask(0o077)
        try:
            for d in (self.base, self.config_dir, self.data_dir, self.log_dir,
                      self.run_dir, self.store_dir, self.queue_dir):
                try:
                    d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
                except OSError as e:
                    from msgsrv.errors import OperationFailed  # not on configutil's fast path

                    raise OperationFailed(f"cannot create {d}: {self._why(d, e)}") from None
        finally:
            os.umask(old)
        return self

    def _why(self, d: Path, e: OSError) -> str:
        for p in (d, *d.parents):
            if p.exists() and not p.is_dir():
                name = "MSGSRV_BASE " if p == self.base else ""
                return f"{name}{p} is not a directory"
        return (e.strerror or str(e)).lower()
