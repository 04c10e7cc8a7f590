"""Service and LineSession: what every built-in server process shares (SPEC §3 "Process model").

A Service is one server process. Its life, in order:

1. bind every listener: the N worker processes of `service.<svc>.numprocesses` share one
   socket that the watcher bound and they inherited (control/listeners.py); anything else is
   bound here without SO_REUSEPORT, so a port held by another process is a start failure that
   names it (`port 10143 is in use by pid N`);
2. register with the watcher (`Registration.start`; a no-op unless MSGSRV_SUPERVISED=1): that
   REGISTER is the watcher's readiness signal, so it comes only after the listeners accept;
3. serve until SIGTERM/SIGINT: stop accepting, let the reply in flight finish, close idle
   connections, say BYE to the watcher, exit 0 (all within 2 s).

Each new connection first passes the fault switch (services/fault.py). A LineSession then runs
the line protocol: greeting, one line at a time (≤ 8 KiB, else a protocol error reply), verbs
dispatched to `cmd_<VERB>` methods, idle timeout, and a connection closed after too many
errors in a row. Start, stop and errors go to data/log/default as `<daemon>[<pid>]`, with
passwords masked.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import sys
import time

from msgsrv import logfmt
from msgsrv.components import BY_NAME
from msgsrv.paths import ServerRoot
from msgsrv.services.fault import CRASH_STATUS, FaultSwitch

LOOPBACK = "127.0.0.1"
MAX_LINE = 8192  # octets, without the line end
STOP_GRACE = 1.2  # seconds a reply in flight may take after SIGTERM (the budget is 2 s)
TLS_HANDSHAKE_TIMEOUT = 30.0  # seconds a client may take to finish a TLS handshake
_SECRET_VERBS = ("PASS", "AUTH", "AUTHENTICATE", "APOP")


def masked(line: str) -> str:
    """LINE fit for a log: passwords of LOGIN/PASS/AUTH replaced by ****, length capped."""
    words = line.split()
    for i, word in enumerate(w.upper() for w in words[:3]):
        if word in _SECRET_VERBS:
            return " ".join(words[:i + 1] + ["****"])
        if word == "LOGIN":
            return " ".join(words[:i + 2] + ["****"])
    return line[:200]


def set_process_name(name: str) -> None:
    """What ps shows: /proc/self/comm (15 bytes at most)."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass


def listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket: the one inherited from the watcher (the workers of one server share
    it), else bound here, never with SO_REUSEPORT (SPEC §4 "Ports are owned")."""
    from msgsrv.control import listeners

    sock = listeners.take(host, port)
    return sock if sock is not None else listeners.bind_listener(host, port)


class BindError(Exception):
    """A listener could not be bound."""


class Service:
    """One built-in server process. Subclasses set `component` and implement `bind()`."""

    component = ""

    def __init__(self, root: ServerRoot):
        from msgsrv.config.store import ConfigStore

        self.root = root
        self.daemon = BY_NAME[self.component].daemon
        self.config = ConfigStore(root.config_file)
        self.worker = int(os.environ.get("MSGSRV_WORKER", "0") or 0)
        self.pid = os.getpid()
        self.started = time.monotonic()  # for its uptime: a clock no step of the wall clock moves
        self.fault = FaultSwitch(root.fault_file(self.component))
        self.servers: list[asyncio.AbstractServer] = []
        self.ports: list[int] = []
        self.sessions: dict[asyncio.Task, LineSession] = {}
        self.stopping: asyncio.Event | None = None
        self._tls: ssl.SSLContext | None = None

    # -- logging ----------------------------------------------------------------------
    def log(self, text: str, severity: str = "Notice") -> None:
        try:
            logfmt.default_log(self.root, f"{self.daemon}[{self.pid}]", severity, text)
        except OSError:
            pass  # a full disk must not take the server down

    # -- listeners ----------------------------------------------------------------------
    def port(self, parameter: str) -> int:
        return self.config.get_int(parameter)

    def public_host(self) -> str:
        """Address of client-facing listeners: `service.listenaddr` when set, else loopback."""
        return self.config.get_str("service.listenaddr", LOOPBACK) or LOOPBACK

    def bound(self, host: str, port: int) -> socket.socket:
        try:
            sock = listener(host, port)
        except OSError as e:
            raise BindError(f"unable to listen on {host}:{port}: {e.strerror or e}") from None
        self.ports.append(sock.getsockname()[1])
        return sock

    async def listen(self, port: int, session_class: type[LineSession], host: str = LOOPBACK,
                     tls: ssl.SSLContext | None = None) -> None:
        """Serve SESSION_CLASS on HOST:PORT; with TLS, over implicit TLS (the handshake comes first)."""
        sock = self.bound(host, port)

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.run_session(session_class(self, reader, writer))

        self.servers.append(await asyncio.start_server(client, sock=sock, limit=MAX_LINE + 2, ssl=tls,
                                                       ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if tls else None))

    def tls_context(self) -> ssl.SSLContext:
        """The suite's TLS server context (msgsrv/tls.py), made once; BindError when it is unusable."""
        if self._tls is None:
            from msgsrv import tls

            try:
                self._tls = tls.server_context(self.root, self.config)
            except tls.TlsError as e:
                raise BindError(str(e)) from None
        return self._tls

    async def bind(self) -> None:
        """Create every listener (subclasses); called before registering with the watcher."""

    async def prepare(self) -> None:
        """Work after binding and before registering (subclasses)."""

    # -- the fault switch (SPEC §3 "Fault injection") -----------------------------------------
    async def admit(self) -> bool:
        """Apply the fault switch to a new connection: False means never answer it."""
        fault = self.fault.current()
        if fault is None:
            return True
        if fault.mode == "crash":
            self.log("fault injection: crash requested, exiting abnormally", "Error")
            os._exit(CRASH_STATUS)
        if fault.mode == "hang":
            await self.stopping.wait()  # keep the connection, never answer it
            return False
        try:
            await asyncio.wait_for(self.stopping.wait(), fault.seconds)
            return False
        except TimeoutError:
            return True

    # -- connections ------------------------------------------------------------------------
    async def run_session(self, session: LineSession) -> None:
        task = asyncio.current_task()
        self.sessions[task] = session
        try:
            if await self.admit():
                await session.run()
        except asyncio.CancelledError:
            pass  # SIGTERM while the connection was idle
        except (ConnectionError, TimeoutError):
            pass  # the client went away
        except Exception as e:  # one broken connection must not take the server down
            self.log(f"error serving {session.peer} ({masked(session.last)!r}): {type(e).__name__}: {e}", "Error")
        finally:
            self.sessions.pop(task, None)
            session.close()

    # -- life -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        if not self.stopping.is_set():
            self.stopping.set()

    def on_usr1(self) -> None:
        state = "on" if self.fault.toggle_hang() else "off"
        self.log(f"fault injection: SIGUSR1 turned hang {state}", "Warning")

    async def drain(self) -> None:
        """Stop accepting; close idle connections now, busy ones once their reply is sent."""
        for server in self.servers:
            server.close()
        for task, session in list(self.sessions.items()):
            if not session.busy:
                session.on_shutdown()
                task.cancel()
        pending = list(self.sessions)
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE)
        for task in list(self.sessions):
            task.cancel()

    async def serve(self) -> None:
        from msgsrv.control.registration import Registration

        self.stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Signals first: a client may connect (and a SIGUSR1 or SIGTERM may come) once we listen.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGUSR1, self.on_usr1)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        await self.bind()
        from msgsrv.control.listeners import close_unclaimed

        close_unclaimed()  # an inherited socket nobody serves must not hold its port
        await self.prepare()
        registration = Registration.start(self.component, self.root)  # serves while the watcher reads it
        ports = " ".join(str(p) for p in self.ports)
        self.log(f"{self.daemon} process {self.pid} started (worker {self.worker}), listening on port {ports}")
        await self.stopping.wait()
        await self.drain()
        await registration.bye()
        self.log(f"{self.daemon} process {self.pid} stopped")

    def main(self) -> int:
        set_process_name(self.daemon)
        from msgsrv.store import maildir

        maildir.on_repair = lambda text: self.log(text, "Warning")  # a broken uidlist rewritten
        try:
            asyncio.run(self.serve())
        except BindError as e:
            self.log(str(e), "Error")
            print(f"msgsrv-server: fatal: {self.component}: {e}", file=sys.stderr)
            return 1
        return 0


class LineSession:
    """One client connection of a line protocol.

    Subclasses write `greet()` and `cmd_<VERB>(args)` methods; `parse(line)` splits a line
    into (tag, verb, rest) and `reply_error(tag, text)` writes the protocol's error reply.
    """

    idle_timeout = 600.0  # seconds
    max_errors = 10  # protocol errors in a row before the connection is closed

    def __init__(self, service: Service, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.service = service
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.busy = False
        self.done = False
        self.errors = 0
        self.last = ""  # the command being handled, for error logs (masked)

    # -- output -------------------------------------------------------------------------
    def send(self, text: str) -> None:
        self.writer.write(text.encode("utf-8", "surrogateescape") + b"\r\n")

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)

    async def flush(self) -> None:
        await self.writer.drain()

    # -- TLS (STARTTLS / STLS) --------------------------------------------------------------
    @property
    def secure(self) -> bool:
        """The connection is encrypted (an implicit-TLS port, or after STARTTLS)."""
        return self.writer.get_extra_info("ssl_object") is not None

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Turn this connection into TLS after the protocol's go-ahead reply has been queued.

        RFC 2595 §3.1 / RFC 3207 §4.2: anything the client sent after the command in cleartext is
        discarded, never read as if it had come over TLS (the command-injection attack).
        """
        await self.flush()
        self.reader._buffer.clear()  # asyncio keeps no public way to drop buffered input
        await self.writer.start_tls(context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)

    def close(self) -> None:
        self.writer.close()

    # -- input ----------------------------------------------------------------------------
    async def read_line(self) -> bytes | None:
        """The next line without its end, or None at end of input.

        Raises LineTooLong after discarding the rest of an overlong line.
        """
        try:
            raw = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None  # connection closed (possibly mid-command: that command is dropped)
        except asyncio.LimitOverrunError as e:
            await self._discard(e.consumed)
            raise LineTooLong() from None
        line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        if len(line) > MAX_LINE:
            raise LineTooLong()
        return line

    async def read_command(self) -> str | None:
        """The next command line as text (protocols with literals override this)."""
        line = await self.read_line()
        return None if line is None else line.decode("utf-8", "surrogateescape")

    async def _discard(self, consumed: int) -> None:
        """Throw away input up to and including the next line end."""
        while True:
            if consumed:
                await self.reader.readexactly(consumed)
            try:
                await self.reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as e:
                consumed = e.consumed

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        await self.greet()
        await self.flush()
        while not self.done:
            try:
                line = await asyncio.wait_for(self.read_command(), self.idle_timeout)
            except TimeoutError:
                self.on_idle_timeout()
                await self.flush()
                return
            except LineTooLong as e:
                ends = self.on_line_too_long(e)
                await self.flush()
                if ends:
                    return
                continue
            except asyncio.IncompleteReadError:
                return
            if line is None:
                return
            self.busy = True
            self.last = self.describe(line)
            try:
                await self.dispatch(line)
                self.after_dispatch()
                await self.flush()
            finally:
                self.busy = False
            if self.errors >= self.max_errors:
                self.on_too_many_errors()
                await self.flush()
                return
            if self.service.stopping.is_set():
                self.on_shutdown()
                return

    # hooks of the loop for protocols that need more (IMAP: tags, literals, BYE)
    def on_line_too_long(self, e: LineTooLong) -> bool:
        """Answer an overlong line; True ends the session."""
        self.protocol_error(None, f"line too long (more than {MAX_LINE} octets)")
        return False

    def describe(self, line: str) -> str:
        """The command as the session's `last` shows it (and logs on errors)."""
        return line

    def after_dispatch(self) -> None:
        """Called after each command, before its answer is flushed."""

    async def dispatch(self, line: str) -> None:
        tag, verb, rest = self.parse(line)
        if verb is None:
            self.protocol_error(tag, "command line not understood")
            return
        method = getattr(self, f"cmd_{verb.upper()}", None) if verb.isalpha() else None
        if method is None:
            self.protocol_error(tag, f"unknown command {verb[:40]!r}")
            return
        self.errors = 0
        await method(tag, rest)

    def parse(self, line: str) -> tuple[str | None, str | None, str]:
        """(tag, verb, rest): untagged protocols have no tag."""
        verb, _, rest = line.strip().partition(" ")
        return None, (verb or None), rest

    def protocol_error(self, tag: str | None, text: str) -> None:
        self.errors += 1
        self.service.log(f"protocol error from {self.peer}: {text}", "Warning")
        self.reply_error(tag, text)

    # -- protocol hooks -------------------------------------------------------------------------
    async def greet(self) -> None:
        self.send(f"* OK {self.service.daemon} ready")

    def reply_error(self, tag: str | None, text: str) -> None:
        self.send(f"-ERR {text}")

    def on_idle_timeout(self) -> None:
        self.reply_error(None, "idle timeout, closing connection")

    def on_too_many_errors(self) -> None:
        self.reply_error(None, "too many errors, closing connection")

    def on_shutdown(self) -> None:
        """Last words when the server stops (written without waiting)."""


class LineTooLong(Exception):
    """A line exceeded MAX_LINE octets (the line was discarded)."""


# -- the health line protocol of the internal daemons -------------------------------------
class HealthSession(LineSession):
    """Greeting `* OK <daemon> ready`, then PING, STATUS, QUIT, each answered `+OK ...`.

    Errors are `-ERR <text>`. Subclasses add verbs and extend `status()`.
    """

    def status(self) -> str:
        s = self.service
        return f"{s.daemon} pid={s.pid} worker={s.worker} uptime={int(time.monotonic() - s.started)}"

    async def cmd_PING(self, tag, rest: str) -> None:
        self.send("+OK PONG")

    async def cmd_STATUS(self, tag, rest: str) -> None:
        self.send(f"+OK {self.status()}")

    async def cmd_QUIT(self, tag, rest: str) -> None:
        self.send("+OK bye")
        self.done = True


class HealthService(Service):
    """A server whose only listener speaks the health line protocol on one port parameter."""

    port_parameter = ""
    session_class: type[LineSession] = HealthSession

    async def bind(self) -> None:
        await self.listen(self.port(self.port_parameter), self.session_class)
