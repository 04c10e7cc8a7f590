"""FaultSwitch: the documented test switch that makes a built-in server misbehave (SPEC §3
"Fault injection"), so users can rehearse their monitoring and tests can exercise msprobe and
the watcher.

The switch is the file `data/run/fault.<component>`, read on every new connection (one stat;
the content is re-read only when the file changes), so every worker process obeys it:

    hang      keep accepting connections, never answer them
    slow N    answer each new connection after N seconds (N may be fractional)
    crash     exit abnormally (status 70) on the next connection

Removing the file returns the server to normal. SIGUSR1 toggles `hang` in one process, for a
quick manual rehearsal (`kill -USR1 <pid>`); the file, when present, wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CRASH_STATUS = 70  # EX_SOFTWARE: an abnormal exit the watcher reports


@dataclass(frozen=True)
class Fault:
    mode: str  # "hang" | "slow" | "crash"
    seconds: float = 0.0


def parse(text: str) -> Fault | None:
    """The fault named by TEXT, or None when TEXT names none (unknown words are ignored)."""
    words = text.split()
    if not words:
        return None
    mode = words[0].lower()
    if mode in ("hang", "crash"):
        return Fault(mode)
    if mode == "slow":
        try:
            return Fault("slow", max(0.0, float(words[1])))
        except (IndexError, ValueError):
            return None
    return None


class FaultSwitch:
    def __init__(self, path: Path):
        self.path = path
        self.toggled_hang = False  # SIGUSR1
        self._seen: tuple[int, int, int] | None = None
        self._fault: Fault | None = None

    def toggle_hang(self) -> bool:
        self.toggled_hang = not self.toggled_hang
        return self.toggled_hang

    def current(self) -> Fault | None:
        """The fault in force now: the file's, else the SIGUSR1 hang, else None."""
        try:
            st = os.stat(self.path)
        except OSError:
            self._seen, self._fault = None, None
            return Fault("hang") if self.toggled_hang else None
        ident = (st.st_ino, st.st_mtime_ns, st.st_size)
        if ident != self._seen:
            try:
                self._fault = parse(self.path.read_text(errors="replace"))
            except OSError:
                self._fault = None
            self._seen = ident
        if self._fault is None and self.toggled_hang:
            return Fault("hang")
        return self._fault
