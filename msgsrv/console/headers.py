"""The security headers every console answer carries, whoever makes it: the application (app.py),
aiohttp's own handler for a request it cannot parse (app.Handler), or the gate in front of both
(server.py: too many connections, a head too slow). Imports nothing heavy (server.py uses it before
the application is loaded).

A CSP that allows no inline script or style and no framing, no content sniffing, no referrer.
"""

from __future__ import annotations

from collections.abc import MutableMapping

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
SERVER = "msgsrv-console"


def secure(headers: MutableMapping[str, str], cache: str = "no-store") -> None:
    """Add the security headers (keeping any a response set itself), the server's name and CACHE."""
    for k, v in SECURITY_HEADERS.items():
        headers.setdefault(k, v)
    headers["Server"] = SERVER
    headers.setdefault("Cache-Control", cache)
