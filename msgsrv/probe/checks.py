"""One async probe per protocol: connect, speak the protocol's own commands, time the answer.

Each probe returns a ProbeResult; none raises. The clock runs from the connect to the last
expected response. A probe that gets no answer within TIMEOUT seconds returns ok=False with
timed_out=True (the verdict calls that HUNG); a refused connection or a wrong answer returns
ok=False, timed_out=False (DOWN).

The implicit-TLS ports (imaps, pops, https, smtps) are probed with the plain protocol's dialogue over
TLS: the clock then includes the TCP connect and the whole TLS handshake, and a certificate the
client context does not trust, or a failed handshake, is DOWN.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

HOST = "127.0.0.1"
MAX_LINE = 8192


@dataclass(frozen=True)
class ProbeResult:
    service: str
    port: int
    elapsed: float  # seconds from connect to the last response (or to the give-up point)
    ok: bool  # the server answered as its protocol says it should
    detail: str = ""
    timed_out: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class BadAnswer(Exception):
    """The server answered, but not as its protocol says."""


class Conversation:
    """A line-oriented exchange on one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def line(self) -> str:
        try:
            raw = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                raise BadAnswer("connection closed by server") from None
            raw = e.partial
        except asyncio.LimitOverrunError:
            raise BadAnswer("answer line too long") from None
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    async def send(self, text: str) -> None:
        self.writer.write(text.encode("utf-8") + b"\r\n")
        await self.writer.drain()

    async def reply(self, ok: Callable[[str], bool], what: str, more: Callable[[str], bool] = lambda s: False) -> str:
        """Read lines while MORE(line) holds (continuations), then check the last with OK."""
        line = await self.line()
        while more(line):
            line = await self.line()
        if not ok(line):
            raise BadAnswer(f"unexpected {what}: {line[:80]!r}")
        return line


Dialogue = Callable[[Conversation], Awaitable[str]]


# -- the dialogues, one per protocol -------------------------------------------------------
async def imap(c: Conversation) -> str:
    # RFC 3501 §7.1.1: "* OK" greeting; §6.1.3 LOGOUT -> "* BYE" then the tagged OK
    greeting = await c.reply(lambda s: s.startswith("* OK") or s.startswith("* PREAUTH"), "IMAP greeting")
    await c.send("a1 LOGOUT")
    await c.reply(lambda s: s.startswith("a1 OK"), "LOGOUT answer", more=lambda s: s.startswith("*"))
    return greeting


async def pop(c: Conversation) -> str:
    # RFC 1939 §4: "+OK" greeting; §6 QUIT -> "+OK"
    greeting = await c.reply(lambda s: s.startswith("+OK"), "POP greeting")
    await c.send("QUIT")
    await c.reply(lambda s: s.startswith("+OK"), "QUIT answer")
    return greeting


async def http(c: Conversation) -> str:
    # RFC 9112 §4: status line "HTTP/1.x NNN reason"; any status below 500 means it answers
    await c.send(f"GET / HTTP/1.0\r\nHost: {HOST}\r\nUser-Agent: msprobe\r\nConnection: close\r\n")

    def good(s: str) -> bool:
        parts = s.split(" ", 2)
        return len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit() and int(parts[1]) < 500

    return await c.reply(good, "HTTP status line")


def _smtp(hello: str) -> Dialogue:
    # RFC 5321 §4.2: "220" banner (continuations "220-"), EHLO -> "250 ", QUIT -> "221"; RFC 2033 LHLO
    async def dialogue(c: Conversation) -> str:
        banner = await c.reply(lambda s: s.startswith("220 ") or s == "220", "banner",
                               more=lambda s: s.startswith("220-"))
        await c.send(f"{hello} msprobe.localhost")
        await c.reply(lambda s: s.startswith("250 ") or s == "250", f"{hello} answer",
                      more=lambda s: s.startswith("250-"))
        await c.send("QUIT")
        await c.reply(lambda s: s.startswith("221"), "QUIT answer")
        return banner

    return dialogue


smtp = _smtp("EHLO")
lmtp = _smtp("LHLO")


def _is_error(s: str) -> bool:
    return s.startswith(("ERR", "-ERR"))


async def line(c: Conversation) -> str:
    """The suite's line protocols (store, ens, job_controller, cert, sched, mmp): a greeting
    line, then PING answered by one line. An error greeting is a failure; any answer to PING
    shows the server is alive."""
    greeting = await c.reply(lambda s: bool(s) and not _is_error(s), "greeting")
    await c.send("PING")
    await c.line()
    return greeting


DIALOGUES: dict[str, Dialogue] = {
    "imap": imap,
    "imaps": imap,
    "pop": pop,
    "pops": pop,
    "http": http,
    "https": http,
    "smtp": smtp,
    "smtps": smtp,
    "lmtp": lmtp,
    "store": line,
    "ens": line,
    "job_controller": line,
    "cert": line,
    "sched": line,
    "mmp": line,
}


# msprobe services spoken over implicit TLS -> the parameter that switches their port on
TLS_SERVICES: dict[str, str] = {
    "imaps": "service.imap.enablesslport",
    "pops": "service.pop.enablesslport",
    "https": "service.http.enablesslport",
    "smtps": "service.smtp.enablesslport",
}


# -- the shell: connect, run the dialogue under a deadline, time it --------------------------
async def probe(service: str, port: int, timeout: float, host: str = HOST,
                dialogue: Dialogue | None = None, tls: ssl.SSLContext | None = None) -> ProbeResult:
    """Probe SERVICE on HOST:PORT (over TLS when a client context is given); never takes much
    longer than TIMEOUT."""
    dialogue = dialogue or DIALOGUES[service]
    start = time.monotonic()
    writer: asyncio.StreamWriter | None = None

    async def exchange() -> str:
        nonlocal writer
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE, ssl=tls,
                                                       ssl_handshake_timeout=timeout + 5 if tls else None)  # wait_for decides: HUNG
        return await dialogue(Conversation(reader, writer))

    try:
        first = await asyncio.wait_for(exchange(), timeout)
        ok, detail, timed_out = True, first[:80], False
    except TimeoutError:
        ok, detail, timed_out = False, f"no response within {_secs(timeout)}s", True
    except BadAnswer as e:
        ok, detail, timed_out = False, str(e), False
    except ssl.SSLError as e:
        ok, detail, timed_out = False, f"TLS handshake failed: {getattr(e, 'verify_message', '') or e.reason or e}", False
    except OSError as e:
        ok, detail, timed_out = False, (os.strerror(e.errno) if e.errno else str(e)).lower(), False
    elapsed = time.monotonic() - start
    if writer is not None:
        writer.close()  # no wait_closed(): a hung peer must not hold the pass
    return ProbeResult(service, port, elapsed, ok, detail, timed_out)


def _secs(n: float) -> str:
    return str(int(n)) if float(n) == int(n) else f"{n:g}"
