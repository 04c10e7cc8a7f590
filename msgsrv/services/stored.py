"""StoreService: the message store daemon, `stored` (SPEC §3 "Built-in services").

It owns `data/store/` (layout in msgsrv/store/mailbox.py) and serves a health line protocol on
`local.store.port` (default 10999, loopback only):

    S: * OK stored ready
    C: PING            S: +OK PONG
    C: STATUS          S: +OK stored pid=<pid> worker=<n> uptime=<s> users=<n>
                       (or -ERR store directory ... when data/store is not writable)
    C: QUIT            S: +OK bye

`check_status(root, timeout)` is the client half, used by start-msg for its "checking store
server status ... ready" line.
"""

from __future__ import annotations

import os
import socket

from msgsrv.paths import ServerRoot
from msgsrv.services.base import LOOPBACK, HealthService, HealthSession


class StoreSession(HealthSession):
    async def cmd_STATUS(self, tag, rest: str) -> None:
        store = self.service.root.store_dir
        if not os.access(store, os.W_OK | os.X_OK):
            self.send(f"-ERR store directory {store} is not writable")
            return
        from msgsrv.store.mailbox import Store

        self.send(f"+OK {self.status()} users={len(Store(self.service.root).users())}")


class StoreService(HealthService):
    component = "store"
    port_parameter = "local.store.port"
    session_class = StoreSession

    async def prepare(self) -> None:
        self.root.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


SERVICE = StoreService


def check_status(root: ServerRoot, timeout: float = 5.0) -> bool:
    """True when stored answers STATUS with +OK on local.store.port within TIMEOUT seconds."""
    from msgsrv.config.store import ConfigStore

    port = ConfigStore(root.config_file).get_int("local.store.port")
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            f = sock.makefile("rb")
            if not f.readline(8194).startswith(b"* OK"):
                return False
            sock.sendall(b"STATUS\r\n")
            return f.readline(8194).startswith(b"+OK")
    except OSError:
        return False
