"""HttpService: the web server `mshttpd` (HTTP/1.1 on aiohttp), on `service.http.port` and over
implicit TLS on `service.http.sslport` (HTTPS; `service.http.enablesslport no` turns it off).

    GET /          a small HTML status page: server, pid, worker, uptime, store; no user data
    GET /health    JSON: {"status": "ok", "server": "mshttpd", "pid": ..., "worker": ...,
                          "uptime": ..., "store": "ok"}   (503 and "status": "degraded" when
                          data/store is not writable); always open, for probes
    GET /mail      the logged-in user's mailboxes and message counts: HTTP Basic authentication
                   against the users file (401 without it; 403 on cleartext with
                   `local.requiretls yes`); wrong passwords are slowed down like POP's
    HEAD           the same without the body

aiohttp's parser (its pure-Python one, which accepts any method token) reads the request
(issue 13 "HTTP": a hand-written parser is where request smuggling lives). A request body, plain or chunked, is read and thrown away, up to MAX_BODY
(more: 413 and the connection closes), so it never runs into the next request. aiohttp refuses
malformed request lines and headers, conflicting Content-Length and Content-Length with
Transfer-Encoding (400), lines over 8190 octets and more than 100 header fields. This module adds:
Host required for HTTP/1.1 and never repeated (400, RFC 9112 §3.2); absolute-form targets
(`GET http://host/health`) served by their path; 501 for a method this server does not know,
405 (with Allow) for a known one it does not serve; 404 for other paths. Idle keep-alive
connections close after 60 s.

The built-in service contract holds as for the line servers (services/base.py): listeners bound
before the watcher registration, the fault switch on each new connection (services/gate.py),
SIGUSR1, SIGTERM drain within 2 s, errors in data/log/default.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import logging
import os
import time
import weakref

from msgsrv.services.base import STOP_GRACE, Service

MAX_HEADERS = 100
MAX_BODY = 64 * 1024  # octets of request body read (and discarded); more is refused with 413
IDLE = 60.0  # seconds a keep-alive connection may stay idle
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
SERVED_METHODS = ("GET", "HEAD")
REALM = "msgsrv"


class _ToDefaultLog(logging.Handler):
    """aiohttp's own warnings and errors go to data/log/default as one line each: a request its
    parser refused is a protocol error (Warning), anything else an Error."""

    def __init__(self, service: HttpService):
        super().__init__(logging.WARNING)
        self.service = service

    def emit(self, record: logging.LogRecord) -> None:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            why = next((w.strip() for w in (exc.message or "").splitlines() if w.strip()), type(exc).__name__)
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            self.service.log(f"protocol error from {peer}: {exc.code} {why[:200]}", "Warning")
            return
        text = record.getMessage()
        if exc is not None:
            text += f": {type(exc).__name__}: {exc}"
        self.service.log(" ".join(text.split())[:500], "Error" if record.levelno >= logging.ERROR else "Warning")


class HttpService(Service):
    component = "http"

    def __init__(self, root):
        super().__init__(root)
        from msgsrv.services.gate import GateKeeper
        from msgsrv.services.logins import LoginGuard

        self.gates = GateKeeper(self)
        self.logins = LoginGuard(self)
        self.require_tls = self.config.get_bool("local.requiretls")
        self.runner = None
        self.auth_failures: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # transport -> count

    # -- listeners --------------------------------------------------------------------------
    async def bind(self) -> None:
        host = self.public_host()
        plain = self.bound(host, self.port("service.http.port"))
        secure = None
        if self.config.get_bool("service.http.enablesslport"):
            context = self.tls_context()
            secure = (self.bound(host, self.port("service.http.sslport")), context)
        # The ports accept (into the backlog) from here on; aiohttp's import is the slow part of the start.
        # aiohttp's own parser, not llhttp: llhttp refuses any method it does not know with a bare 400,
        # where RFC 9110 §9.1 asks for 501 (a method is any token); both parsers share aiohttp's checks.
        os.environ["AIOHTTP_NO_EXTENSIONS"] = "1"
        from aiohttp import http_parser, web, web_protocol

        # a server forked from the watcher (issue 14) finds aiohttp imported already, with llhttp
        web_protocol.HttpRequestParser = http_parser.HttpRequestParserPy

        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{path:.*}", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=STOP_GRACE,
                                    keepalive_timeout=IDLE, max_line_size=8190, max_field_size=8190,
                                    max_headers=MAX_HEADERS, lingering_time=1.0)
        await self.runner.setup()
        server_log = logging.getLogger("aiohttp")
        server_log.addHandler(_ToDefaultLog(self))
        server_log.propagate = False  # nothing on stderr
        loop = asyncio.get_running_loop()
        factory = self.gates.factory(self.runner.server)
        self.servers.append(await loop.create_server(factory, sock=plain))
        if secure:
            sock, context = secure
            self.servers.append(await loop.create_server(factory, sock=sock, ssl=context,
                                                         ssl_handshake_timeout=30.0))

    async def drain(self) -> None:
        """Stop accepting; idle connections close now, a request in flight may finish (≤ STOP_GRACE)."""
        for server in self.servers:
            server.close()
        self.gates.close_held()
        if self.runner is not None:
            try:
                await asyncio.wait_for(self.runner.cleanup(), STOP_GRACE + 0.3)
            except TimeoutError:
                pass

    # -- requests ---------------------------------------------------------------------------
    async def handle(self, request):
        from aiohttp import web

        method = request.method
        if method not in KNOWN_METHODS:
            return self.refuse(request, 501, f"method {method[:20]} not implemented")
        hosts = request.headers.getall("Host", [])  # aiohttp ≥ 3.14 refuses these already; older ones do not
        if len(hosts) > 1 or (not hosts and request.version >= (1, 1)):
            return self.refuse(request, 400, "exactly one Host header field is required")
        if request.body_exists:
            if (request.content_length or 0) > MAX_BODY:
                return self.refuse(request, 413, f"request body over {MAX_BODY} octets", close=True)
            try:
                await request.read()  # chunked bodies too; over client_max_size raises 413
            except web.HTTPRequestEntityTooLarge:
                return self.refuse(request, 413, f"request body over {MAX_BODY} octets", close=True)
        if method not in SERVED_METHODS:
            response = self.refuse(request, 405, f"method {method} not allowed")
            response.headers["Allow"] = ", ".join(SERVED_METHODS)
            return response
        path = request.path
        if path == "/health":
            facts = self.facts()
            return web.json_response(facts, status=200 if facts["status"] == "ok" else 503,
                                     headers=self.headers())
        if path == "/":
            return web.Response(body=self.page(), content_type="text/html", charset="utf-8",
                                headers=self.headers())
        if path == "/mail":
            return await self.mail(request)
        return web.Response(status=404, text="404 Not Found\n", headers=self.headers())

    def headers(self) -> dict:
        return {"Server": self.daemon}

    def refuse(self, request, status: int, text: str, close: bool = False):
        from aiohttp import web

        self.log(f"protocol error from {request.remote}: {status} {text}", "Warning")
        response = web.Response(status=status, text=f"{status} {text}\n", headers=self.headers())
        if close:
            response.force_close()
        return response

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

    async def mail(self, request):
        """The authenticated user's own mailboxes (HTTP Basic, RFC 7617)."""
        from aiohttp import web

        if self.require_tls and not request.secure:
            return self.refuse(request, 403, "log in over HTTPS (local.requiretls is on)")
        user, password = _basic(request.headers.get("Authorization", ""))
        address = request.remote or "?"
        if user is not None and await self.logins.verify(user, password, address):
            return web.Response(body=self.page(self.mailboxes(user), f"mail of {user}"), content_type="text/html",
                                charset="utf-8", headers={**self.headers(), "Cache-Control": "no-store"})
        headers = {**self.headers(), "WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}
        response = web.Response(status=401, text="401 log in to see your mailboxes\n", headers=headers)
        if user is not None:
            transport = request.transport
            count = self.auth_failures.get(transport, 0) + 1 if transport is not None else 1
            if transport is not None:
                self.auth_failures[transport] = count
            if await self.logins.failed(user, address, count):
                response.force_close()
        return response

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
