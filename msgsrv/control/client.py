"""Blocking client of the watcher's control port, for start-msg, stop-msg, msprobe, mboxutil and
`watcher status` (the registration each built-in server keeps open: control/registration.py).

Where: the running watcher's record, data/run/watcher.json, first (it names the port the watcher
really listens on, even after `configutil -o local.watcher.port` changed the setting); the
configured port only when no watcher runs (issue 11).

Deadlines: every call has one (local.watcher.calltimeout, default 5 s). Waiting requests get
keepalive lines from the watcher, so the deadline is on silence: a watcher that accepts the
connection but sends nothing (stopped, wedged) is reported as `watcher N is not answering`.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable

from msgsrv.control.protocol import KEEPALIVE, Answer, format_request
from msgsrv.errors import OperationFailed, file_problem
from msgsrv.paths import ServerRoot

DEFAULT_CALL_TIMEOUT = 5.0
MIN_CALL_TIMEOUT = 4 * KEEPALIVE  # a deadline always spans several keepalives


class WatcherUnavailable(OperationFailed):
    """No watcher answers on the control port (or its token can't be read)."""


class WatcherNotAnswering(WatcherUnavailable):
    """A watcher accepted the connection but did not answer within the deadline."""

    def __init__(self, pid: int | None, port: int):
        self.pid, self.port = pid, port
        super().__init__(f"watcher {pid} is not answering" if pid else
                         f"the watcher on 127.0.0.1:{port} is not answering")


class WatcherError(OperationFailed):
    """The watcher answered ERR."""


def read_settings(root: ServerRoot):
    """The configuration, or None when it cannot be read (a broken file must not stop a client)."""
    from msgsrv.config.store import ConfigStore, StoreError

    store = ConfigStore(root.config_file)
    try:
        store.overrides()
    except StoreError:
        return None
    return store


def running_watcher(root: ServerRoot) -> dict | None:
    """data/run/watcher.json of a watcher that is alive (pid and start time checked), else None."""
    from msgsrv.control.runrecord import live_watcher

    return live_watcher(root.run_dir)


def watcher_port(root: ServerRoot) -> int:
    rec = running_watcher(root)
    if rec and isinstance(rec.get("port"), int):
        return rec["port"]
    store = read_settings(root)
    return store.get_int("local.watcher.port", 49994) if store else 49994


def call_timeout(root: ServerRoot) -> float:
    store = read_settings(root)
    value = store.get_float("local.watcher.calltimeout", DEFAULT_CALL_TIMEOUT) if store else DEFAULT_CALL_TIMEOUT
    return max(value, MIN_CALL_TIMEOUT) if value > 0 else DEFAULT_CALL_TIMEOUT


NOT_RUNNING = "the watcher is not running (start-msg starts it)"


def read_token(root: ServerRoot) -> str:
    try:
        return root.token_file.read_text().strip()
    except OSError as e:
        raise WatcherUnavailable(f"unable to read the watcher token {file_problem(e)}") from None


def who_am_i() -> str:
    """'msprobe[4321]': the program's name (without .py) and pid, for the journal's `by`."""
    name = os.path.basename(sys.argv[0] or "") or "python"
    return f"{name.removesuffix('.py')}[{os.getpid()}]"


class WatcherClient:
    def __init__(self, sock: socket.socket, timeout: float, pid: int | None = None, port: int = 0):
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.timeout = timeout
        self.pid = pid
        self.port = port

    @classmethod
    def connect(cls, root: ServerRoot, port: int | None = None, timeout: float | None = None) -> WatcherClient:
        """Connect and authenticate. TIMEOUT: the deadline of each call (default: calltimeout)."""
        rec = running_watcher(root) if port is None else None
        if port is None:
            port = rec["port"] if rec and isinstance(rec.get("port"), int) else watcher_port(root)
        timeout = call_timeout(root) if timeout is None else timeout
        if rec is None and not root.token_file.exists():
            raise WatcherUnavailable(NOT_RUNNING)  # never started here, or stopped: no token left
        token = read_token(root)
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except TimeoutError:
            raise WatcherNotAnswering(rec["pid"] if rec else None, port) from None
        except ConnectionRefusedError as e:
            if rec is None:  # no run record names a live watcher, and nothing listens: say that
                raise WatcherUnavailable(NOT_RUNNING) from None
            raise WatcherUnavailable(f"unable to connect to watcher on 127.0.0.1:{port}: {e.strerror}") from None
        except OSError as e:
            raise WatcherUnavailable(f"unable to connect to watcher on 127.0.0.1:{port}: "
                                     f"{e.strerror or e}") from None
        client = cls(sock, timeout, rec["pid"] if rec else None, port)
        try:
            client.request("AUTH", token, who_am_i())
        except WatcherNotAnswering:
            client.close()
            raise
        except WatcherError as e:
            client.close()
            raise WatcherUnavailable(f"watcher refused the token: {e}") from None
        return client

    def request(self, verb: str, *args: str, on_progress: Callable[[str, str], None] | None = None,
                timeout: float | None = None) -> str:
        """Send one request; progress ('T'|'L', text) goes to ON_PROGRESS; returns the text after OK.

        TIMEOUT: seconds of silence after which the watcher is not answering (default: the client's)."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        self._io(self.sock.sendall, format_request(verb, *args))
        while True:
            raw = self._io(self.rfile.readline)
            if not raw:
                raise WatcherError("watcher closed the connection")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            kind, _, text = line.partition(" ")
            if kind == "OK":
                return text
            if kind == "ERR":
                raise WatcherError(text)
            if kind in ("T", "L") and on_progress is not None:
                on_progress(kind, text)  # outside _io: its own errors (a closed stdout) are not the watcher's

    def _io(self, call, *args):
        """CALL on the connection; its errors as the watcher's."""
        try:
            return call(*args)
        except TimeoutError:
            raise WatcherNotAnswering(self.pid, self.port) from None
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


# -- reports: msprobe and the store utilities tell the watcher what they saw -----------------------
def report_hang(root: ServerRoot, service: str, since: float, detail: str) -> Answer:
    """msprobe: SERVICE did not respond to a probe begun at SINCE. The watcher logs it and decides."""
    with WatcherClient.connect(root) as client:
        return Answer.parse(client.request("HUNG", service, f"{since:.3f}", detail))


def report_utility_failure(root: ServerRoot, who: str, reason: str, timeout: float | None = None) -> Answer:
    with WatcherClient.connect(root, timeout=timeout) as client:
        return Answer.parse(client.request("FAILED", who, reason))


class UtilitySession:
    """A store utility's registration (SPEC §1): held while it runs, BYE when it finishes. If the
    utility is killed, the connection closes without BYE and the watcher restarts the store group.
    Without a watcher (or with one that does not answer at once) it does nothing."""

    def __init__(self, root: ServerRoot, name: str, timeout: float = 2.0):
        self.client: WatcherClient | None = None
        try:
            self.client = WatcherClient.connect(root, timeout=timeout)
            self.client.request("UTILITY", name, str(os.getpid()))
        except OperationFailed:
            if self.client is not None:
                self.client.close()
            self.client = None

    def report(self, who: str, reason: str) -> Answer:
        if self.client is None:
            raise WatcherUnavailable("no watcher answered")
        return Answer.parse(self.client.request("FAILED", who, reason))

    def close(self) -> None:
        self.client = _say_bye(self.client)

    def __enter__(self) -> UtilitySession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _say_bye(client: WatcherClient | None) -> None:
    """End a registration in order: BYE, then close (a closing without BYE means a failure)."""
    if client is not None:
        try:
            client.request("BYE", timeout=2.0)
        except OperationFailed:
            pass
        client.close()
