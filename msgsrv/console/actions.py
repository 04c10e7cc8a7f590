"""Admin actions started from the console, and their progress lines as they happen.

An Action collects the lines its operation writes (the same `Starting imap server .... 4242`
lines start-msg shows, dots included) so a page can follow them live (server-sent events) and a
script can read them (`/api/actions/<id>`). The last KEEP actions are remembered.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Awaitable

KEEP = 50
MAX_LINES = 2000  # an action's lines beyond this are dropped (a restart writes ~20)


class Action:
    def __init__(self, id: str, kind: str, target: str, who: str):
        self.id = id
        self.kind = kind  # restart | stop | start | probe
        self.target = target
        self.who = who
        self.started = time.time()
        self.finished: float | None = None
        self.ok: bool | None = None
        self.error = ""
        self.lines: list[str] = []
        self.partial = ""
        self.version = 0
        self._changed = asyncio.Event()

    # -- fed by the operation (supervisor Out's send callback: 'T' text, 'L' end of line) --------
    def feed(self, kind: str, text: str) -> None:
        if kind == "T":
            self.partial += text
        else:
            if len(self.lines) < MAX_LINES:
                self.lines.append(self.partial + text)
            self.partial = ""
        self._bump()

    def finish(self, ok: bool, error: str = "") -> None:
        if self.partial:
            self.lines.append(self.partial)
            self.partial = ""
        self.ok, self.error, self.finished = ok, error, time.time()
        self._bump()

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def done(self) -> bool:
        return self.finished is not None

    async def changed(self, seen: int, timeout: float) -> bool:
        """Wait until the action changed after version SEEN (or TIMEOUT); True when it did."""
        if self.version != seen:
            return True
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def to_dict(self, after: int = 0) -> dict:
        return {"id": self.id, "kind": self.kind, "target": self.target, "who": self.who,
                "started": self.started, "finished": self.finished, "done": self.done, "ok": self.ok,
                "error": self.error, "after": after, "lines": self.lines[after:], "partial": self.partial,
                "count": len(self.lines)}


class Actions:
    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self._by_id: OrderedDict[str, Action] = OrderedDict()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()

    def create(self, kind: str, target: str, who: str) -> Action:
        a = Action(f"{int(time.time())}-{next(self._ids)}", kind, target, who)
        self._by_id[a.id] = a
        while len(self._by_id) > self.keep:
            self._by_id.popitem(last=False)
        return a

    def get(self, id: str) -> Action | None:
        return self._by_id.get(id)

    def recent(self) -> list[Action]:
        return list(reversed(self._by_id.values()))

    def run(self, action: Action, work: Awaitable) -> asyncio.Task:
        """Await WORK in the background and record how it ended on ACTION."""

        async def go() -> None:
            try:
                await work
            except asyncio.CancelledError:
                action.finish(False, "cancelled: the watcher is stopping")
                raise
            except Exception as e:  # an operation's failure is the action's result
                action.finish(False, str(e) or type(e).__name__)
            else:
                action.finish(True)

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
