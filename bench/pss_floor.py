"""The memory floor of issue 14's PSS goal: what ten forked CPython asyncio servers cost with no
server code at all.

    python bench/pss_floor.py [--children 10]

A parent imports what every built-in server needs at the least (asyncio, ssl, email, json,
logging), freezes its collector (`gc.freeze()`, as the watcher does before it forks), then forks
CHILDREN processes that each freeze again, listen on a loopback port with an asyncio server and
wait. After two seconds it prints the PSS of the parent, of one child, the child's private dirty
pages, and the total, then kills the children. The watcher and the real servers carry more (the
servers' code, configuration, store, TLS contexts): this is the least ten Python servers take.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils  # noqa: F401 - part of what every server imports
import gc
import json  # noqa: F401
import logging  # noqa: F401
import os
import signal
import ssl  # noqa: F401
import time


def rollup(pid: int, key: str) -> float:
    """One field of /proc/PID/smaps_rollup, in MiB."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def child() -> None:
    gc.freeze()

    async def serve() -> None:
        async def greet(reader, writer):
            writer.write(b"* OK\r\n")
            await writer.drain()
            writer.close()

        await asyncio.start_server(greet, "127.0.0.1", 0)
        await asyncio.sleep(3600)

    asyncio.run(serve())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=10)
    args = ap.parse_args()
    gc.freeze()
    kids = []
    for _ in range(args.children):
        pid = os.fork()
        if pid == 0:
            child()
            os._exit(0)
        kids.append(pid)
    try:
        time.sleep(2)
        me = os.getpid()
        total = rollup(me, "Pss") + sum(rollup(k, "Pss") for k in kids)
        rows = [("parent PSS", f"{rollup(me, 'Pss'):.1f} MiB"),
                ("one child PSS / private dirty", f"{rollup(kids[0], 'Pss'):.1f} / {rollup(kids[0], 'Private_Dirty'):.1f} MiB"),
                (f"total, {len(kids) + 1} processes", f"{total:.1f} MiB"),
                ("issue 14's goal for the watcher and every server", "45 MiB")]
        width = max(len(r[0]) for r in rows)
        print(f"| {'what':<{width}} | figure |\n|{'-' * (width + 2)}|---|")
        for what, figure in rows:
            print(f"| {what:<{width}} | {figure} |")
    finally:
        for k in kids:
            os.kill(k, signal.SIGKILL)
            os.waitpid(k, 0)


if __name__ == "__main__":
    main()
