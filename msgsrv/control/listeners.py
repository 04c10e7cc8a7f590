"""Listening sockets are owned (SPEC §4 "Ports are owned"): the contract between the watcher and
the servers it starts about who creates a listening socket, and who holds a port.

No SO_REUSEPORT: a stale or second instance must not silently take half the connections. The
workers of one server share one socket instead: the watcher binds it once (bind_listener) and the
workers inherit it. The environment variable names the inherited descriptors:

    MSGSRV_LISTEN_FDS="127.0.0.1:10110=3,127.0.0.1:10995=4"      (host:port=fd, IPv6 hosts in [])

A server asks `take(host, port)` first and binds itself only when nothing was inherited for that
address; `close_unclaimed()` closes inherited sockets it did not use, so none is held without
being served. A port held by anyone else is a start failure that names the holder:
`port 10143 is in use by pid 4321 (imapd)`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

ENV = "MSGSRV_LISTEN_FDS"
BACKLOG = 128

_taken: set[int] = set()


class PortInUse(OSError):
    """The address is held by another socket; the text names the holder."""

    def __str__(self) -> str:
        return str(self.strerror)


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def encode(fds: dict[tuple[str, int], int]) -> str:
    return ",".join(f"{f'[{h}]' if ':' in h else h}:{p}={fd}" for (h, p), fd in fds.items())


def inherited(env: dict[str, str] | None = None) -> dict[tuple[str, int], int]:
    """The sockets named in MSGSRV_LISTEN_FDS (malformed entries are ignored)."""
    text = (os.environ if env is None else env).get(ENV, "")
    out: dict[tuple[str, int], int] = {}
    for item in filter(None, text.split(",")):
        addr, _, fd = item.rpartition("=")
        with contextlib.suppress(ValueError):
            out[_split(addr)] = int(fd)
    return out


def take(host: str, port: int) -> socket.socket | None:
    """The inherited listening socket for HOST:PORT, or None (then bind it yourself)."""
    fd = inherited().get((host, port))
    if fd is None or fd in _taken:
        return None
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    _taken.add(fd)
    sock.setblocking(False)
    return sock


def close_unclaimed() -> None:
    for fd in inherited().values():
        if fd not in _taken:
            with contextlib.suppress(OSError):
                os.close(fd)
            _taken.add(fd)


def holder(port: int) -> str:
    """Who holds PORT: 'pid 4321 (imapd)', or a vaguer phrase when that cannot be seen."""
    try:
        import psutil

        conns = [c for c in psutil.net_connections(kind="inet") if c.laddr and c.laddr.port == port]
    except Exception:  # psutil refused (permissions, /proc not mounted): say less, never fail
        return "another process"
    conns.sort(key=lambda c: c.status != "LISTEN")
    for c in conns:
        if c.pid:
            try:
                name = psutil.Process(c.pid).name()
            except Exception:
                name = "?"
            how = "" if c.status == "LISTEN" else f", an outgoing connection ({c.status.lower()})"
            return f"pid {c.pid} ({name}{how})"
    return "another process" if conns else "another process (it may have just exited)"


def in_use(port: int) -> str:
    return f"port {port} is in use by {holder(port)}"


def bind_listener(host: str, port: int, backlog: int = BACKLOG, inheritable: bool = False) -> socket.socket:
    """A listening TCP socket on HOST:PORT (SO_REUSEADDR for TIME_WAIT, never SO_REUSEPORT).

    Raises PortInUse naming the holder, or OSError for any other reason.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0): asyncio then sets TCP_NODELAY on each accepted connection
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise PortInUse(errno.EADDRINUSE, in_use(port)) from None
            raise
        sock.listen(backlog)
        sock.setblocking(False)
        sock.set_inheritable(inheritable)
    except OSError:
        sock.close()
        raise
    return sock
