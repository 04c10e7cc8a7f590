"""Blocking reads (sqlite, log files, the config file) off the watcher's loop, bounded.

Two worker threads of the console's own (the loop's default executor is left to others), at most
MAX_PENDING reads waiting at once (more are refused with Busy, HTTP 503, instead of piling up), and
a short-lived cache: twenty pages polling the same plot cost one read per TTL, and identical
reads in flight are shared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor

WORKERS = 2
MAX_PENDING = 32
TTL = 1.0  # seconds a result is reused


class Busy(Exception):
    """Too many reads are waiting; try again."""


class Reader:
    def __init__(self, workers: int = WORKERS, max_pending: int = MAX_PENDING, ttl: float = TTL):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="console-read")
        self.max_pending = max_pending
        self.ttl = ttl
        self.pending = 0
        self._cache: dict[Hashable, tuple[float, object]] = {}
        self._inflight: dict[Hashable, asyncio.Future] = {}

    async def run(self, fn: Callable, *args, key: Hashable | None = None):
        """FN(*ARGS) on a worker thread; with KEY, a result younger than TTL is reused."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        if key is not None:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
            shared = self._inflight.get(key)
            if shared is not None:
                return await asyncio.shield(shared)
        if self.pending >= self.max_pending:
            raise Busy()
        self.pending += 1
        fut = loop.run_in_executor(self._pool, fn, *args)

        def settled(f: asyncio.Future) -> None:
            # counted until the thread is done, even when the request that asked has gone
            self.pending -= 1
            if key is not None and self._inflight.get(key) is f:
                del self._inflight[key]

        fut.add_done_callback(settled)
        if key is not None:
            self._inflight[key] = fut
        result = await asyncio.shield(fut)
        if key is not None:
            self._cache[key] = (time.monotonic(), result)
            if len(self._cache) > 256:
                self._expire()
        return result

    def _expire(self) -> None:
        now = time.monotonic()
        for k in [k for k, (t, _) in self._cache.items() if now - t >= self.ttl]:
            del self._cache[k]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
