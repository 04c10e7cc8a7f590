"""Who may use the console: the watcher's control token, presented once, then a session.

SPEC §3 "Control port": the token in data/run/watcher.token (0600) is the only credential. The
admin opens the link start-msg prints (`/?token=…`, as Jupyter does); the console answers with a
session cookie (HttpOnly, SameSite=Strict) and sends the browser to `/`, so the token leaves the
address bar and the history. Actions need that session *and* its CSRF token (a header the page's
own script sends); scripts may present the token itself as `Authorization: Bearer <token>`, which
no other site can make a browser send, so such requests need no CSRF token.

Pure apart from the random numbers: the clock is passed in; sessions live in memory, so a new
watcher (with a new token) starts with none.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "msgsrv_console"
CSRF_HEADER = "X-CSRF-Token"
IDLE = 12 * 3600.0  # a session unused this long is forgotten
MAX_SESSIONS = 64  # the oldest is forgotten first


@dataclass
class Session:
    id: str
    csrf: str
    created: float
    last: float = field(default=0.0)


def same(a: str | None, b: str) -> bool:
    """Constant-time comparison; a missing value never matches."""
    return a is not None and hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8"))


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class Sessions:
    def __init__(self, token: str, clock: Callable[[], float] = time.monotonic, idle: float = IDLE,
                 limit: int = MAX_SESSIONS):
        self.token = token
        self.clock = clock
        self.idle = idle
        self.limit = limit
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def token_ok(self, presented: str | None) -> bool:
        return same(presented, self.token)

    def create(self) -> Session:
        now = self.clock()
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        self._by_id[s.id] = s
        while len(self._by_id) > self.limit:
            self._by_id.popitem(last=False)
        return s

    def get(self, sid: str | None) -> Session | None:
        """The live session SID (its idle clock restarts), or None."""
        if not sid:
            return None
        s = self._by_id.get(sid)
        if s is None:
            return None
        now = self.clock()
        if now - s.last >= self.idle:
            del self._by_id[sid]
            return None
        s.last = now
        self._by_id.move_to_end(sid)
        return s

    def drop(self, sid: str | None) -> None:
        if sid:
            self._by_id.pop(sid, None)

    def __len__(self) -> int:
        return len(self._by_id)
