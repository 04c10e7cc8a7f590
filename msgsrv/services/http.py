"""HttpService: the web server `mshttpd` (HTTP/1.1, RFC 9110/9112 subset), on `service.http.port`.

    GET /          a small HTML status page (server, pid, worker, uptime, users)
    GET /health    JSON: {"status": "ok", "server": "mshttpd", "pid": ..., "worker": ...,
                          "uptime": ..., "store": "ok"}   (503 and "status": "degraded" when
                          data/store is not writable)
    HEAD           the same without the body

Other paths: 404. Other methods: 405 (the connection is then closed, since a request body is
not read). A malformed request line: 400; a request line over 8 KiB: 414; a header line over
8 KiB or more than 100 header fields: 431 (all close the connection). Connections are kept
alive for HTTP/1.1 unless the client sends `Connection: close`; idle ones close after 60 s.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import time

from msgsrv.services.base import LineSession, LineTooLong, Service

MAX_HEADERS = 100
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           414: "URI Too Long", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


class HttpSession(LineSession):
    idle_timeout = 60.0

    def respond(self, status: int, body: bytes, ctype: str, *, head: bool = False, close: bool = False) -> None:
        date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
        lines = [f"HTTP/1.1 {status} {REASONS[status]}", f"Date: {date}", f"Server: {self.service.daemon}",
                 f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
                 f"Connection: {'close' if close else 'keep-alive'}"]
        if status == 405:
            lines.append("Allow: GET, HEAD")
        self.send_bytes(("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (b"" if head else body))
        if close:
            self.done = True

    def error(self, status: int, text: str) -> None:
        self.errors += 1
        self.service.log(f"protocol error from {self.peer}: {status} {text}", "Warning")
        self.respond(status, f"{status} {REASONS[status]}: {text}\n".encode(), "text/plain; charset=utf-8",
                     close=True)

    async def run(self) -> None:
        while not self.done:
            try:
                line = await asyncio.wait_for(self.read_line(), self.idle_timeout)
            except TimeoutError:
                return
            except LineTooLong:
                self.error(414, "request line too long")
                break
            except asyncio.IncompleteReadError:
                return
            if line is None:
                return
            if not line:
                continue  # RFC 9112 §2.2: ignore empty lines before a request line
            self.busy = True
            try:
                await self.request(line.decode("latin-1"))
                await self.flush()
            finally:
                self.busy = False
            if self.service.stopping.is_set():
                return
        await self.flush()

    async def request(self, request_line: str) -> None:
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
            self.error(400, "malformed request line")
            return
        method, target, version = parts
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            try:
                line = await self.read_line()
            except LineTooLong:
                self.error(431, "header line too long")
                return
            if line is None:
                self.done = True
                return
            if not line:
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip():
                self.error(400, "malformed header field")
                return
            headers[name.lower()] = value.strip()
        else:
            self.error(431, f"more than {MAX_HEADERS} header fields")
            return
        connection = headers.get("connection", "").lower()
        close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        if method not in ("GET", "HEAD"):
            self.error(405, f"method {method[:20]} not allowed")
            return
        path = target.split("?", 1)[0]
        head = method == "HEAD"
        if path == "/health":
            status, body = self.health()
            self.respond(status, body, "application/json", head=head, close=close)
        elif path == "/":
            self.respond(200, self.page(), "text/html; charset=utf-8", head=head, close=close)
        else:
            self.respond(404, b"404 Not Found\n", "text/plain; charset=utf-8", head=head, close=close)

    def facts(self) -> dict:
        s = self.service
        store_ok = os.access(s.root.store_dir, os.W_OK | os.X_OK)
        return {"status": "ok" if store_ok else "degraded", "server": s.daemon, "pid": s.pid,
                "worker": s.worker, "uptime": int(time.time() - s.started), "store": "ok" if store_ok else
                "not writable"}

    def health(self) -> tuple[int, bytes]:
        facts = self.facts()
        return (200 if facts["status"] == "ok" else 503), json.dumps(facts).encode() + b"\n"

    def page(self) -> bytes:
        from msgsrv.store.mailbox import Store

        facts = self.facts()
        facts["users with mail"] = len(Store(self.service.root).users())
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in facts.items())
        return (f"<!DOCTYPE html><html><head><title>msgsrv {facts['server']}</title></head><body>"
                f"<h1>msgsrv {facts['server']}</h1><table>{rows}</table>"
                f'<p><a href="/health">/health</a> (JSON)</p></body></html>\n').encode()


class HttpService(Service):
    component = "http"

    async def bind(self) -> None:
        await self.listen(self.port("service.http.port"), HttpSession, self.public_host())


SERVICE = HttpService
