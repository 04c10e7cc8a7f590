"""Small real servers for probe tests: each runs on 127.0.0.1 in a background asyncio loop.

    with FakeServers() as fs:
        port = fs.start("imap")          # greets "* OK", answers LOGOUT
        port = fs.start("hang")          # accepts, never answers
        port = fs.start("slow", 0.3)     # answers like "line" after 0.3 s

A FakeWatcher speaks the control protocol's AUTH / HUNG / FAILED lines and records them.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading

GREETINGS = {
    "imap": b"* OK [CAPABILITY IMAP4rev1] fake ready\r\n",
    "pop": b"+OK fake POP3 ready\r\n",
    "smtp": b"220-fake.example ESMTP\r\n220 fake.example ready\r\n",
    "lmtp": b"220 fake.example LMTP ready\r\n",
    "line": b"OK fake ready\r\n",
    "bad": b"-ERR go away\r\n",
}


async def _answer(kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if kind == "http":
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return
    writer.write(GREETINGS[kind])
    await writer.drain()
    while True:
        raw = await reader.readline()
        if not raw:
            return
        words = raw.decode().split()
        if not words:
            continue
        if kind == "imap":
            writer.write(b"* BYE bye\r\n" + words[0].encode() + b" OK LOGOUT completed\r\n")
        elif kind == "pop":
            writer.write(b"+OK bye\r\n")
        elif kind in ("smtp", "lmtp"):
            if words[0].upper() in ("EHLO", "LHLO"):
                writer.write(b"250-fake.example\r\n250 8BITMIME\r\n")
            elif words[0].upper() == "QUIT":
                writer.write(b"221 bye\r\n")
        else:
            writer.write(b"OK pong\r\n")
        await writer.drain()


class FakeServers:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.servers: list[asyncio.Server] = []
        self.hung: list[asyncio.StreamWriter] = []

    def __enter__(self) -> FakeServers:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        async def shut() -> None:
            for s in self.servers:
                s.close()
            for w in self.hung:
                w.close()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def start(self, kind: str, delay: float = 0.0, port: int = 0) -> int:
        async def handle(reader, writer) -> None:
            try:
                if kind == "hang":
                    self.hung.append(writer)
                    await reader.read()
                    return
                if delay:
                    await asyncio.sleep(delay)
                await _answer("line" if kind == "slow" else kind, reader, writer)
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        async def make() -> int:
            server = await asyncio.start_server(handle, "127.0.0.1", port)
            self.servers.append(server)
            return server.sockets[0].getsockname()[1]

        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(5)


class FakeWatcher:
    """The watcher's control port, reduced to AUTH + recording requests (answers OK)."""

    def __init__(self, root):
        self.root = root
        self.token = secrets.token_hex(16)
        self.requests: list[tuple[str, ...]] = []
        self.got = threading.Event()
        self.fs = FakeServers()
        self.port = 0

    def __enter__(self) -> FakeWatcher:
        self.fs.__enter__()
        self.root.token_file.write_text(self.token + "\n")

        async def handle(reader, writer) -> None:
            first = (await reader.readline()).decode().split()
            if first[:2] != ["AUTH", self.token] or len(first) > 3:  # AUTH <token> [<who>]
                writer.write(b"ERR bad token\n")
                writer.close()
                return
            writer.write(b"OK\n")
            while raw := await reader.readline():
                self.requests.append(tuple(raw.decode().split()))
                self.got.set()
                writer.write(b"OK\n")
                await writer.drain()
            writer.close()

        async def make() -> int:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.fs.servers.append(server)
            return server.sockets[0].getsockname()[1]

        self.port = asyncio.run_coroutine_threadsafe(make(), self.fs.loop).result(5)
        return self

    def __exit__(self, *exc) -> None:
        self.fs.__exit__(*exc)


def closed_port() -> int:
    """A port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
