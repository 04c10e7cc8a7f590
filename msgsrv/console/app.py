"""The console as an aiohttp application: routes, security headers, login, and refusals.

Every response carries the security headers of headers.py (a CSP that allows no inline script or
style, no framing, no referrer), aiohttp's own answers to unparsable requests too (Handler). Everything but the login page and the static files needs a session (or the
token as a bearer credential); every request that changes something needs, with a session, the
session's CSRF token and no foreign Origin. A refusal is one clear line: JSON `{"error": …}` under
/api/ and /plot/, a small page elsewhere (for 401, the login page, and no data).
"""

from __future__ import annotations

import asyncio
import traceback

from aiohttp import web

from msgsrv import logfmt
from msgsrv.console import auth
from msgsrv.console import text as T
from msgsrv.console.headers import secure
from msgsrv.console.reader import Busy
from msgsrv.console.views import CONSOLE, Console, Refusal

MAX_BODY = 64 * 1024

SAFE_METHODS = ("GET", "HEAD")


def _machine(request: web.Request) -> bool:
    """Answer in JSON (API, plots) rather than with a page."""
    return request.path.startswith(("/api/", "/plot/")) or request.path == "/logout"


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    secure(response.headers, "private, max-age=300" if request.path.startswith("/static/") else "no-store")


class Handler(web.RequestHandler):
    """aiohttp's connection handler, with the security headers on the answers aiohttp makes itself:
    a request it cannot parse (garbage, TLS on the HTTP port, a head too long) never reaches the
    application, so on_response_prepare never sees its 400."""

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)
        secure(response.headers)
        return response


def _refusal(request: web.Request, status: int, message: str) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    if _machine(request):
        return web.json_response({"error": message}, status=status)
    if status == 401:
        return console.login_page(T.LOGIN_PAGE if message == T.NEED_LOGIN else message, status=401)
    return console.error_page(status, message)


@web.middleware
async def guard(request: web.Request, handler) -> web.StreamResponse:
    """Turn every refusal into one clear answer; an unexpected error is logged, never raised into
    the watcher's loop."""
    try:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise Refusal(413, T.TOO_LARGE.format(limit=MAX_BODY))
        return await handler(request)
    except Refusal as r:
        return _refusal(request, r.status, r.message)
    except Busy:
        return _refusal(request, 503, T.BUSY)
    except web.HTTPRequestEntityTooLarge:
        return _refusal(request, 413, T.TOO_LARGE.format(limit=MAX_BODY))
    except web.HTTPException as e:
        if e.status < 400:
            raise  # redirects
        return _refusal(request, e.status, T.NOT_FOUND if e.status == 404 else e.reason)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as e:
        console: Console = request.app[CONSOLE]
        where = traceback.extract_tb(e.__traceback__)[-1]
        logfmt.default_log(console.backend.root, "watcher", "Error",
                           f"console: {request.method} {request.path}: {type(e).__name__}: {e} "
                           f"({where.filename}:{where.lineno})")
        return _refusal(request, 500, f"internal error: {type(e).__name__}")


def _public(request: web.Request) -> bool:
    return request.path == "/login" or request.path.startswith("/static/")


@web.middleware
async def authenticate(request: web.Request, handler) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    sessions = console.sessions
    session = sessions.get(request.cookies.get(auth.COOKIE))
    request["session"] = session
    if request.path == "/" and "token" in request.query:
        return console.log_in(request, request.query.get("token"))  # the link start-msg prints
    if _public(request):
        return await handler(request)
    via_bearer = sessions.token_ok(auth.bearer(request.headers.get("Authorization")))
    if session is None and not via_bearer:
        raise Refusal(401, T.NEED_LOGIN)
    if request.method not in SAFE_METHODS and not via_bearer:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise Refusal(401, T.CROSS_ORIGIN)
        if not auth.same(request.headers.get(auth.CSRF_HEADER), session.csrf):
            raise Refusal(401, T.BAD_CSRF)
    return await handler(request)


def make_app(backend, token: str) -> web.Application:
    console = Console(backend, auth.Sessions(token))
    app = web.Application(middlewares=[guard, authenticate], client_max_size=MAX_BODY)
    app[CONSOLE] = console
    app.on_response_prepare.append(_headers)
    r = app.router
    r.add_get("/", console.overview)
    r.add_get("/login", console.login)
    r.add_post("/login", console.login_form)
    r.add_post("/logout", console.logout)
    r.add_get("/plots", console.plots)
    r.add_get("/timeline", console.timeline_page)
    r.add_get("/logs", console.logs_page)
    r.add_get("/plot/{service}.svg", console.plot_svg)
    r.add_get("/api/status", console.api_status)
    r.add_get("/api/probes", console.api_probes)
    r.add_get("/api/history", console.api_history)
    r.add_get("/api/timeline", console.api_timeline)
    r.add_get("/api/logs", console.api_logs)
    r.add_get("/api/log", console.api_log)
    r.add_get("/api/actions", console.api_actions)
    r.add_get("/api/actions/{id}", console.api_action)
    r.add_get("/api/actions/{id}/events", console.api_action_events)
    r.add_post("/api/units/{unit}/restart", console.act_restart)
    r.add_post("/api/components/{component}/stop", console.act_stop)
    r.add_post("/api/components/{component}/start", console.act_start)
    r.add_post("/api/probe", console.act_probe)
    r.add_static("/static/", console.static_dir, show_index=False, follow_symlinks=False)
    return app
