"""HttpService: the web server `mshttpd` (HTTP/1.1, parsed by h11), on `service.http.port` and over
implicit TLS on `service.http.sslport` (HTTPS; `service.http.enablesslport no` turns it off).

    GET /          a small HTML status page: server, pid, worker, uptime, store; no user data
    GET /health    JSON: {"status": "ok", "server": "mshttpd", "pid": ..., "worker": ...,
                          "uptime": ..., "store": "ok"}   (503 and "status": "degraded" when
                          data/store is not writable); always open, for probes
    GET /mail      the logged-in user's mailboxes and message counts: HTTP Basic authentication
                   against the users file (401 without it; 403 on cleartext with
                   `local.requiretls yes`); wrong passwords are slowed down like POP's
    HEAD           the same without the body

h11 reads the requests and frames the responses (issue 13 "HTTP": a hand-written parser is where
request smuggling lives; issue 14: h11 imports in ~8 ms where aiohttp's server took ~130 ms of every
cold start, and a server forked from the watcher shares it). h11 refuses malformed request lines
and headers, a missing or repeated Host (RFC 9112 §3.2), conflicting or malformed Content-Length and
any Transfer-Encoding but chunked (400, 501), and a request head over MAX_HEAD octets (431); it
unfolds an obs-fold line into one value as RFC 9112 §5.2 allows. This module adds: Content-Length
together with Transfer-Encoding refused (400: RFC 9112 §6.1 lets a server reject it, and it is the
smuggling pattern), a request target over MAX_LINE octets (414), a header field over MAX_LINE or
more than MAX_HEADERS fields (431), a Host value that is no host (400); a body, plain or chunked,
read and thrown away up to MAX_BODY (more: 413 and the connection closes), so it never runs into
the next request; absolute-form targets (`GET http://host/health`) served by their path; 501 for a
method this server does not know, 405 (with Allow) for a known one it does not serve; 404 for other
paths. Every refusal is answered and logged as a protocol error; one that comes before the request
was read whole (400, 413, 414, 431) closes the connection, after reading and dropping what the
client sends for LINGER seconds (so the close does not reset the connection before the client has
read the answer). Idle keep-alive connections close after IDLE seconds.

The built-in service contract holds as for the line servers (services/base.py): listeners bound
before the watcher registration, the fault switch on each new connection (`Service.admit`),
SIGUSR1, SIGTERM drain within 2 s (a request in flight may finish), errors in data/log/default.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import json
import os
import re
import time
from urllib.parse import unquote, urlsplit

import h11

from msgsrv.services.base import LineSession, Service

MAX_LINE = 8190  # octets of the request target, and of any one header field
MAX_HEAD = 64 * 1024  # octets of a whole request head (request line and header fields)
MAX_HEADERS = 100
MAX_BODY = 64 * 1024  # octets of request body read (and discarded); more is refused with 413
IDLE = 60.0  # seconds a keep-alive connection may stay idle (and a client may pause mid-request)
CHUNK = 65536
LINGER = 1.0  # seconds a refused connection's further input is read and dropped before it closes
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
SERVED_METHODS = ("GET", "HEAD")
REALM = "msgsrv"
# RFC 3986 host (reg-name, IPv4, or an IP literal in brackets) and an optional port
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.vV\-_~!$&'()*+,;=]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
           405: b"Method Not Allowed", 413: b"Content Too Large", 414: b"URI Too Long",
           431: b"Request Header Fields Too Large", 501: b"Not Implemented", 503: b"Service Unavailable"}


class Refused(Exception):
    """A request answered with an error status; the connection closes after the answer."""

    def __init__(self, status: int, text: str, headers: tuple = ()):
        super().__init__(text)
        self.status, self.text, self.headers = status, text, headers


class HttpSession(LineSession):
    """One HTTP/1.1 connection: requests one after the other (pipelined ones wait their turn)."""

    def __init__(self, service: HttpService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        super().__init__(service, reader, writer)
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.client = self.peer.rpartition(":")[0] or "?"
        self.auth_failures = 0
        self.eof = False  # the client has closed its side

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        while not self.service.stopping.is_set():
            try:
                event = await self.next_event()
                if not isinstance(event, h11.Request):
                    return  # ConnectionClosed: the client's end, or the idle timeout
                self.busy = True
                self.last = f"{event.method.decode()} {event.target[:200].decode('ascii', 'replace')}"
                keep = await self.respond(event)
            except h11.RemoteProtocolError as e:
                if not self.eof:  # not a client that went away in the middle of a request
                    await self.refuse(Refused(e.error_status_hint, str(e) or "malformed request"))
                return
            except Refused as e:
                await self.refuse(e)
                return
            finally:
                self.busy = False
            if not keep or self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                return
            self.conn.start_next_cycle()

    async def next_event(self):
        """The next h11 event; None after IDLE seconds without one (the connection then closes)."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await asyncio.wait_for(self.reader.read(CHUNK), IDLE)
            except TimeoutError:
                return None
            self.eof = not data
            self.conn.receive_data(data)  # b"": the client closed its side

    # -- one request ------------------------------------------------------------------------
    async def respond(self, request: h11.Request) -> bool:
        """Answer REQUEST; False when the connection is to close after it."""
        method = request.method.decode("ascii")
        target = request.target
        if len(target) > MAX_LINE:
            raise Refused(414, f"request target over {MAX_LINE} octets")
        if len(request.headers) > MAX_HEADERS:
            raise Refused(431, f"more than {MAX_HEADERS} header fields")
        headers: dict[bytes, bytes] = {}
        for name, value in request.headers:
            if len(name) + len(value) + 2 > MAX_LINE:
                raise Refused(431, f"header field {name[:40].decode('ascii', 'replace')} over {MAX_LINE} octets")
            headers.setdefault(name, value)
        if b"content-length" in headers and b"transfer-encoding" in headers:
            raise Refused(400, "Content-Length with Transfer-Encoding")
        if b"host" in headers and not _HOST.fullmatch(headers[b"host"]):
            raise Refused(400, "bad Host header field")
        if int(headers.get(b"content-length", b"0")) > MAX_BODY:
            raise Refused(413, f"request body over {MAX_BODY} octets")
        await self.read_body()
        # the request is read whole: an error from here on leaves the connection usable
        head = method == "HEAD"
        if method not in KNOWN_METHODS:
            return await self.error(501, f"method {method[:20]} not implemented")
        if method not in SERVED_METHODS:
            return await self.error(405, f"method {method} not allowed",
                                    ((b"Allow", ", ".join(SERVED_METHODS).encode()),))
        path = _path(target)
        if path == "/health":
            facts = self.service.facts()
            return await self.answer(200 if facts["status"] == "ok" else 503, json.dumps(facts).encode(),
                                     b"application/json; charset=utf-8", head=head)
        if path == "/":
            return await self.answer(200, self.service.page(), b"text/html; charset=utf-8", head=head)
        if path == "/mail":
            return await self.mail(headers, head)
        return await self.answer(404, b"404 Not Found\n", head=head)

    async def read_body(self) -> None:
        """Read the request body (plain or chunked) and throw it away; 413 past MAX_BODY."""
        size = 0
        if self.conn.they_are_waiting_for_100_continue:
            self.writer.write(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        while True:
            event = await self.next_event()
            if event is None:
                raise Refused(400, "request body not sent within the idle timeout")
            if isinstance(event, h11.EndOfMessage):
                return
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    raise Refused(413, f"request body over {MAX_BODY} octets")
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("peer unexpectedly closed connection")

    async def mail(self, headers: dict[bytes, bytes], head: bool) -> bool:
        """The authenticated user's own mailboxes (HTTP Basic, RFC 7617)."""
        service = self.service
        if service.require_tls and not self.secure:
            return await self.error(403, "log in over HTTPS (local.requiretls is on)", head=head)
        user, password = _basic(headers.get(b"authorization", b"").decode("latin-1"))
        if user is not None and await service.logins.verify(user, password, self.client):
            return await self.answer(200, service.page(service.mailboxes(user), f"mail of {user}"),
                                     b"text/html; charset=utf-8", ((b"Cache-Control", b"no-store"),), head=head)
        challenge = ((b"WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode()),)
        close = False
        if user is not None:
            self.auth_failures += 1
            close = await service.logins.failed(user, self.client, self.auth_failures)
        return await self.answer(401, b"401 log in to see your mailboxes\n", extra=challenge, head=head, close=close)

    # -- answers ----------------------------------------------------------------------------
    async def answer(self, status: int, body: bytes, content_type: bytes = b"text/plain; charset=utf-8",
                     extra: tuple = (), head: bool = False, close: bool = False) -> bool:
        """Send one whole response (for HEAD, its headers only); False when the connection closes."""
        headers = [(b"Server", self.service.daemon.encode()), (b"Content-Type", content_type),
                   (b"Content-Length", str(len(body)).encode()), *extra]
        if close:
            headers.append((b"Connection", b"close"))
        out = self.conn.send(h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b"")))
        if body and not head:
            out += self.conn.send(h11.Data(data=body))
        out += self.conn.send(h11.EndOfMessage())
        self.writer.write(out)
        await self.flush()
        return not close

    async def error(self, status: int, text: str, extra: tuple = (), head: bool = False) -> bool:
        """Answer a whole request that this server will not serve (the connection stays usable)."""
        self.service.log(f"protocol error from {self.client}: {status} {text[:200]}", "Warning")
        return await self.answer(status, f"{status} {text}\n".encode(), extra=extra, head=head)

    async def refuse(self, e: Refused) -> None:
        """Log a request refused before it was read whole, answer it if the connection can still
        take an answer, and close: what the client sent after it is read and dropped for LINGER
        seconds first, so that the close does not reset the connection before the answer is read."""
        self.service.log(f"protocol error from {self.client}: {e.status} {e.text[:200]}", "Warning")
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # a response was under way: the connection just closes
        try:
            await self.answer(e.status, f"{e.status} {e.text}\n".encode(), extra=e.headers, close=True)
            if self.writer.can_write_eof():
                self.writer.write_eof()
            await asyncio.wait_for(self._drop_input(), LINGER)
        except (h11.LocalProtocolError, ConnectionError, TimeoutError):
            pass

    async def _drop_input(self) -> None:
        while await self.reader.read(CHUNK):
            pass


class HttpService(Service):
    component = "http"

    def __init__(self, root):
        super().__init__(root)
        from msgsrv.services.logins import LoginGuard

        self.logins = LoginGuard(self)
        self.require_tls = self.config.get_bool("local.requiretls")

    async def bind(self) -> None:
        host = self.public_host()
        await self.listen(self.port("service.http.port"), HttpSession, host)
        if self.config.get_bool("service.http.enablesslport"):
            await self.listen(self.port("service.http.sslport"), HttpSession, host, tls=self.tls_context())

    # -- pages --------------------------------------------------------------------------------
    def facts(self) -> dict:
        store_ok = os.access(self.root.store_dir, os.W_OK | os.X_OK)
        return {"status": "ok" if store_ok else "degraded", "server": self.daemon, "pid": self.pid,
                "worker": self.worker, "uptime": int(time.monotonic() - self.started),
                "store": "ok" if store_ok else "not writable"}

    def page(self, extra: dict | None = None, title: str = "") -> bytes:
        """The status page: server facts only (issue 13: no user data without authentication)."""
        facts = {**self.facts(), **(extra or {})}
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in facts.items())
        title = html.escape(title or f"msgsrv {self.daemon}")
        return (f"<!DOCTYPE html><html><head><title>{title}</title></head><body>"
                f"<h1>{title}</h1><table>{rows}</table>"
                f'<p><a href="/health">/health</a> (JSON) · <a href="/mail">/mail</a> (log in)</p>'
                f"</body></html>\n").encode()

    def mailboxes(self, user: str) -> dict:
        from msgsrv.store.mailbox import MailboxError, Store

        store = Store(self.root)
        out = {}
        try:
            for name in store.mailboxes(user):
                msgs = store.messages(user, name)
                out[f"mailbox {name}"] = f"{len(msgs)} messages, {sum(m.size for m in msgs)} octets"
        except (MailboxError, OSError) as e:
            out["mailboxes"] = f"unavailable: {e}"
        return out or {"mailboxes": "none yet"}


def _path(target: bytes) -> str:
    """The decoded path of a request target, origin-form or absolute-form (RFC 9112 §3.2)."""
    text = target.decode("ascii", "replace")
    return unquote(urlsplit(text).path if "://" in text[:10] else text.partition("?")[0])


def _basic(header: str) -> tuple[str | None, str]:
    """(user, password) from an `Authorization: Basic ...` value; (None, '') when absent or malformed."""
    scheme, _, blob = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None, ""
    try:
        user, sep, password = base64.b64decode(blob.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, ""
    return (user, password) if sep and user else (None, "")


SERVICE = HttpService
