"""Blocking client of the watcher's control port, for start-msg, stop-msg, msprobe, mboxutil,
`watcher status` and the registration connection each built-in server keeps open."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from msgsrv.control.protocol import format_request
from msgsrv.errors import OperationFailed
from msgsrv.paths import ServerRoot


class WatcherUnavailable(OperationFailed):
    """No watcher answers on the control port (or its token can't be read)."""


class WatcherError(OperationFailed):
    """The watcher answered ERR."""


def watcher_port(root: ServerRoot) -> int:
    from msgsrv.config.store import ConfigStore

    return ConfigStore(root.config_file).get_int("local.watcher.port", 49994)


def read_token(root: ServerRoot) -> str:
    try:
        return root.token_file.read_text().strip()
    except OSError as e:
        raise WatcherUnavailable(f"unable to read the watcher token {root.token_file}: {e.strerror}") from None


class WatcherClient:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.rfile = sock.makefile("rb")

    @classmethod
    def connect(cls, root: ServerRoot, port: int | None = None, timeout: float | None = 5.0) -> WatcherClient:
        port = watcher_port(root) if port is None else port
        token = read_token(root)
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as e:
            raise WatcherUnavailable(f"unable to connect to watcher on 127.0.0.1:{port}: "
                                     f"{e.strerror or e}") from None
        client = cls(sock)
        try:
            client.request("AUTH", token)
        except WatcherError as e:
            client.close()
            raise WatcherUnavailable(f"watcher refused the token: {e}") from None
        return client

    def request(self, verb: str, *args: str, on_progress: Callable[[str, str], None] | None = None,
                timeout: float | None = None) -> str:
        """Send one request; progress ('T'|'L', text) goes to ON_PROGRESS; returns the text after OK."""
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(format_request(verb, *args))
            while True:
                raw = self.rfile.readline()
                if not raw:
                    raise WatcherError("watcher closed the connection")
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                kind, _, text = line.partition(" ")
                if kind == "OK":
                    return text
                if kind == "ERR":
                    raise WatcherError(text)
                if kind in ("T", "L") and on_progress is not None:
                    on_progress(kind, text)
        except TimeoutError:
            raise WatcherError(f"no answer from the watcher to {verb}") from None
        except OSError as e:
            raise WatcherError(f"lost the watcher connection: {e.strerror or e}") from None

    def close(self) -> None:
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> WatcherClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- registration: what every built-in server does once it accepts connections -------------
class Registration:
    """A server's registration with the watcher (SPEC §3 "Process model").

    Connect only when the watcher started us (MSGSRV_SUPERVISED=1). Closing the connection
    without bye() tells the watcher we failed.
    """

    def __init__(self, client: WatcherClient | None):
        self.client = client

    @classmethod
    def open(cls, component: str, root: ServerRoot | None = None) -> Registration:
        if os.environ.get("MSGSRV_SUPERVISED") != "1":
            return cls(None)
        root = root or ServerRoot.from_env()
        port = os.environ.get("MSGSRV_WATCHER_PORT")
        try:
            client = WatcherClient.connect(root, int(port) if port else None)
            client.request("REGISTER", component, str(os.getpid()))
        except OperationFailed:
            return cls(None)  # the watcher still sees us through our pid
        return cls(client)

    def bye(self) -> None:
        if self.client is not None:
            try:
                self.client.request("BYE", timeout=2.0)
            except OperationFailed:
                pass
            self.client.close()
            self.client = None
