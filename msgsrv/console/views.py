"""The console's pages and JSON API: what each URL shows or does.

Status and actions come from the Backend (in the loop, no I/O); history, logs, thresholds and the
plots are read and drawn on the Reader's threads. Every refusal is a Refusal(status, line).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

import jinja2
from aiohttp import web

import msgsrv
from msgsrv.components import PROBE_TARGETS, START_ORDER
from msgsrv.console import auth, history, logtail, plots, timeline
from msgsrv.console import text as T
from msgsrv.console.actions import Action, Actions
from msgsrv.console.backend import UNITS, Backend, Refused
from msgsrv.console.reader import Reader
from msgsrv.watcher import journal
from msgsrv.watcher.status import frozen_tag, serving

BODY_TIMEOUT = 10.0  # seconds to receive a request body
MAX_WAIT = 300.0  # seconds a `"wait"` action request may be held
SSE_HEARTBEAT = 15.0
SSE_COALESCE = 0.1  # progress dots come every 50 ms: send at most ten events a second
DISK_SERIES = re.compile(r"disk:[A-Za-z0-9_.-]{1,64}")

CONSOLE: web.AppKey[Console] = web.AppKey("console")


class Refusal(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- blocking helpers (run on the Reader's threads) ---------------------------------------------------
_targets_cache: dict = {}


def _probe_targets(root) -> tuple[dict, dict]:
    """(enabled targets, every target) by service, as msprobe would probe them. The configuration is
    parsed again only when its file changed: parsing TOML is the costliest thing a page could ask of
    a thread that shares the interpreter with the watcher's loop."""
    from msgsrv.config.store import ConfigStore
    from msgsrv.probe.runner import targets

    try:
        st = os.stat(root.config_file)
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
    except FileNotFoundError:
        key = None
    hit = _targets_cache.get(root.config_file)
    if hit is not None and hit[0] == key:
        return hit[1]
    store = ConfigStore(root.config_file)
    found = ({t.service: t for t in targets(store)}, {t.service: t for t in targets(store, list(PROBE_TARGETS))})
    _targets_cache[root.config_file] = (key, found)
    return found


def probe_table(root) -> dict:
    """Every probed service (enabled, or with history): thresholds and the newest result."""
    last = history.last_per_series(root.history_db)
    enabled, every = _probe_targets(root)
    out = []
    for s in PROBE_TARGETS:
        if s not in enabled and s not in last:
            continue
        t = every[s]
        row = {"service": s, "component": t.component, "port": t.port, "warn": t.warn, "timeout": t.timeout,
               "enabled": s in enabled, "last": None}
        if s in last:
            ts, value, ok = last[s]
            row["last"] = {"ts": ts, "value": value, "ok": ok,
                           "status": plots.status(plots.Point(ts, value, ok), t.warn, t.timeout)}
        out.append(row)
    disks = [{"disk": k[len("disk:"):], "ts": v[0], "free_percent": v[1], "ok": v[2]}
             for k, v in sorted(last.items()) if k.startswith("disk:")]
    return {"services": out, "disks": disks}


def draw_plot(root, series: str, rng: str, warn: float, timeout: float) -> str:
    end = time.time()
    start = end - plots.RANGES[rng]
    points = history.plot_points(root.history_db, series, start, end)
    return plots.render(series, points, start, end, warn, timeout, rng)


def log_names(root) -> list[str]:
    return [n for n in logtail.LOGS if root.component_log(n).exists()]


# -- request helpers ----------------------------------------------------------------------------------
def _number(request: web.Request, name: str, default: float | None = None, lo: float | None = None,
            hi: float | None = None) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = float(raw)
    except ValueError:
        raise Refusal(400, T.BAD_NUMBER.format(name=name)) from None
    if v != v or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise Refusal(400, T.BAD_NUMBER.format(name=name) + (f" from {lo:g} to {hi:g}" if hi is not None else ""))
    return v


def _range(request: web.Request, default: str = "hour") -> str:
    rng = request.query.get("range", default)
    if rng not in plots.RANGES:
        raise Refusal(400, T.BAD_RANGE.format(known=", ".join(plots.RANGES)))
    return rng


def _names(request: web.Request, param: str, known) -> list[str]:
    """A comma-separated list of known names (`kind=exit,hang`); an unknown one is a 400."""
    names = [n for n in request.query.get(param, "").split(",") if n]
    for n in names:
        if n not in known:
            raise Refusal(400, T.UNKNOWN_FILTER.format(name=param, value=n, known=" ".join(known)))
    return list(dict.fromkeys(names))


def _one(request: web.Request, param: str, known) -> str | None:
    value = request.query.get(param) or None
    if value is not None and value not in known:
        raise Refusal(400, T.UNKNOWN_FILTER.format(name=param, value=value, known=" ".join(known)))
    return value


def _timeline_filter(request: web.Request) -> dict:
    """since, until (seconds since the epoch), kind, group (comma lists), component, unit, limit."""
    return {"since": _number(request, "since", None, 0), "until": _number(request, "until", None, 0),
            "kinds": _names(request, "kind", journal.KINDS), "groups": _names(request, "group", timeline.GROUPS),
            "component": _one(request, "component", START_ORDER), "unit": _one(request, "unit", UNITS),
            "limit": int(_number(request, "limit", timeline.DEFAULT_LIMIT, 1, timeline.MAX_LIMIT))}


async def read_body(request: web.Request) -> bytes:
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            return await request.read()
    except TimeoutError:
        raise Refusal(408, T.TOO_SLOW.format(seconds=int(BODY_TIMEOUT))) from None


async def action_options(request: web.Request) -> dict:
    """The optional JSON body of an action: {} or {"wait": seconds}."""
    body = await read_body(request)
    if not body.strip():
        return {}
    try:
        opts = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise Refusal(400, T.BAD_BODY.format(reason=f"not JSON ({e.__class__.__name__})")) from None
    if not isinstance(opts, dict):
        raise Refusal(400, T.BAD_BODY.format(reason="expected a JSON object"))
    unknown = sorted(set(opts) - {"wait"})
    if unknown:
        raise Refusal(400, T.BAD_BODY.format(reason=f"unknown field {unknown[0]!r} (known: wait)"))
    wait = opts.get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_WAIT:
        raise Refusal(400, T.BAD_BODY.format(reason=f"wait must be seconds from 0 to {MAX_WAIT:g}"))
    return {"wait": float(wait)}


def unit_groups(st: dict) -> list[dict]:
    """The overview's row groups: one per restart unit (its members together), ens on its own."""
    units = {u["name"]: u for u in st["units"]}
    groups: list[dict] = []
    by_unit: dict[str, dict] = {}
    for r in st["components"]:
        u = r["unit"]
        if u is None:
            groups.append({"unit": None, "info": None, "rows": [r]})
            continue
        if u not in by_unit:
            by_unit[u] = {"unit": u, "info": units[u], "rows": []}
            groups.append(by_unit[u])
        by_unit[u]["rows"].append(r)
    return groups


def _format_uptime(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def last_exit(e: dict | None) -> str:
    """`pid 4242 killed by signal 9 (SIGKILL) at 12:03:04`: a component's last unexpected exit."""
    if not e:
        return "–"
    return f"pid {e['pid']} {e['how']} at {time.strftime('%H:%M:%S', time.localtime(e['time']))}"


def _n(v: float) -> str:
    return str(int(v)) if float(v) == int(v) else f"{v:g}"


class Console:
    def __init__(self, backend: Backend, sessions: auth.Sessions):
        self.backend = backend
        self.sessions = sessions
        self.actions = Actions()
        self.reader = Reader()
        self.static_dir = Path(str(resources.files("msgsrv.console") / "static"))
        self.env = jinja2.Environment(loader=jinja2.PackageLoader("msgsrv.console", "templates"),
                                      autoescape=True, trim_blocks=True, lstrip_blocks=True)
        self.env.filters["uptime"] = _format_uptime
        self.env.filters["frozen"] = frozen_tag
        self.env.filters["secs"] = plots.human_seconds
        self.env.filters["n"] = _n
        self.env.filters["last_exit"] = last_exit
        self.env.filters["clock"] = lambda ts: time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "–"
        self.env.filters["stamp"] = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "–"
        self.host = socket.gethostname()

    async def close(self) -> None:
        await self.actions.close()
        self.reader.close()

    # -- rendering ------------------------------------------------------------------------------
    def _page(self, template: str, request: web.Request | None, status: int = 200, **ctx) -> web.Response:
        session = request.get("session") if request is not None else None
        html = self.env.get_template(template).render(host=self.host, version=msgsrv.__version__,
                                                  csrf=session.csrf if session else "", **ctx)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def login_page(self, message: str = "", status: int = 200) -> web.Response:
        return self._page("login.html", None, status=status, page="login", message=message)

    def error_page(self, status: int, message: str) -> web.Response:
        return self._page("error.html", None, status=status, page="error", status_code=status, message=message)

    # -- login ----------------------------------------------------------------------------------
    def log_in(self, request: web.Request, token: str | None) -> web.Response:
        if not self.sessions.token_ok(token):
            return self.login_page(T.BAD_TOKEN, status=401)
        self.sessions.drop(request.cookies.get(auth.COOKIE))
        s = self.sessions.create()
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(auth.COOKIE, s.id, httponly=True, samesite="Strict", path="/")
        return resp

    async def login(self, request: web.Request) -> web.StreamResponse:
        if request["session"] is not None:
            raise web.HTTPSeeOther("/")
        return self.login_page()

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=4)
        except (ValueError, UnicodeDecodeError):
            raise Refusal(400, T.BAD_BODY.format(reason="expected a form with a token field")) from None
        tokens = form.get("token", [])
        if len(tokens) != 1:
            raise Refusal(400, T.BAD_BODY.format(reason="expected a form with a token field"))
        return self.log_in(request, tokens[0].strip())

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.drop(request.cookies.get(auth.COOKIE))
        resp = web.json_response({"ok": True})
        resp.del_cookie(auth.COOKIE, path="/")
        return resp

    # -- pages ----------------------------------------------------------------------------------
    async def _probe_table(self) -> dict:
        root = self.backend.root
        return await self.reader.run(probe_table, root, key="probes")

    async def overview(self, request: web.Request) -> web.Response:
        st = self.backend.status()
        probes = await self._probe_table()
        rows = st["components"]
        lasts = [p["last"] for p in probes["services"] if p["last"]]
        return self._page("overview.html", request, page="overview", st=st, probes=probes, groups=unit_groups(st),
                          running=sum(1 for r in rows if r["enabled"] and serving(r)),
                          enabled=sum(1 for r in rows if r["enabled"]),
                          restarts=sum(u["restarts"] for u in st["units"]),
                          last_probe=max((p["ts"] for p in lasts), default=None), probed=len(lasts),
                          unhealthy=sum(1 for p in lasts if not p["ok"]),
                          actions=[a.to_dict() for a in self.actions.recent()[:1]])

    async def plots(self, request: web.Request) -> web.Response:
        rng = _range(request)
        st = self.backend.status()
        probes = await self._probe_table()
        svgs = {}
        for row in probes["services"]:
            svgs[row["service"]] = await self._svg(row, rng)
        return self._page("plots.html", request, page="plots", st=st, probes=probes, svgs=svgs, rng=rng,
                          ranges=list(plots.RANGES))

    async def _svg(self, row: dict, rng: str) -> str:
        return await self.reader.run(draw_plot, self.backend.root, row["service"], rng, row["warn"], row["timeout"],
                                     key=("plot", row["service"], rng, row["warn"], row["timeout"]))

    async def timeline_page(self, request: web.Request) -> web.Response:
        st = self.backend.status()
        how = _timeline_filter(request)
        tl = await self._timeline(how)
        return self._page("timeline.html", request, page="timeline", st=st, tl=tl, groups=[(g, T.GROUP_LABELS[g]) for g in timeline.GROUPS],
                          group=",".join(how["groups"]), component=how["component"] or "",
                          components=list(START_ORDER))

    async def logs_page(self, request: web.Request) -> web.Response:
        st = self.backend.status()
        names = await self.reader.run(log_names, self.backend.root, key="lognames")
        name = request.query.get("name", "watcher")
        if name not in logtail.LOGS:
            raise Refusal(404, T.UNKNOWN_LOG.format(name=name, known=" ".join(logtail.LOGS)))
        return self._page("logs.html", request, page="logs", st=st, names=names or ["watcher"], name=name)

    async def plot_svg(self, request: web.Request) -> web.Response:
        series = request.match_info["service"]
        if series not in PROBE_TARGETS:
            raise Refusal(404, T.UNKNOWN_SERIES.format(name=series))
        rng = _range(request)
        probes = await self._probe_table()
        row = next((r for r in probes["services"] if r["service"] == series), None)
        if row is None:  # probed nowhere yet: drawn empty with the thresholds msprobe would use
            row = {"service": series, "warn": 5.0, "timeout": 10.0}
        return web.Response(text=await self._svg(row, rng), content_type="image/svg+xml", charset="utf-8")

    # -- JSON API ---------------------------------------------------------------------------------
    async def api_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.backend.status())

    async def api_probes(self, request: web.Request) -> web.Response:
        return web.json_response(await self._probe_table())

    async def api_history(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        wanted = [s for s in q.get("series", "").split(",") if s]
        for s in wanted:
            if s not in PROBE_TARGETS and not DISK_SERIES.fullmatch(s):
                raise Refusal(404, T.UNKNOWN_SERIES.format(name=s))
        fmt = q.get("format", "json")
        if fmt not in ("json", "csv"):
            raise Refusal(400, T.BAD_FORMAT)
        now = time.time()
        until = _number(request, "until", now, 0)
        since = _number(request, "since", None, 0)
        if since is None:
            since = until - plots.RANGES[_range(request, "day")]
        limit = int(_number(request, "limit", history.MAX_ROWS, 1, history.MAX_ROWS))
        db = self.backend.root.history_db
        try:
            found = await self.reader.run(history.rows, db, wanted or None, since, until, limit)
        except history.HistoryUnavailable as e:
            raise Refusal(503, T.HISTORY_UNAVAILABLE.format(reason=e)) from None
        if fmt == "csv":
            return web.Response(text=history.as_csv(found), content_type="text/csv", charset="utf-8",
                                headers={"Content-Disposition": 'inline; filename="msgsrv-history.csv"'})
        return web.json_response({"series": wanted, "since": since, "until": until, "count": len(found),
                                  "truncated": len(found) == limit, "samples": history.as_dicts(found)})

    async def _timeline(self, how: dict, as_json: bool = False) -> dict | str:
        """The journal's records as HOW (from _timeline_filter) selects them, read on a Reader thread;
        AS_JSON: encoded there too (twenty pages polling the same filter share one encoding)."""
        kinds = timeline.kinds_of(how["kinds"], how["groups"])
        args = dict(since=how["since"], until=how["until"], kinds=kinds, component=how["component"],
                    unit=how["unit"], limit=how["limit"])
        echo = {k: how[k] for k in ("since", "until", "kinds", "groups", "component", "unit", "limit")}
        run_dir = self.backend.root.run_dir

        def read() -> dict | str:
            got = {**timeline.read(run_dir, **args), "filter": echo}
            return json.dumps(got) if as_json else got

        key = ("timeline", as_json, tuple(sorted(kinds)) if kinds is not None else None,
               *(args[k] for k in ("since", "until", "component", "unit", "limit")))
        return await self.reader.run(read, key=key)

    async def api_timeline(self, request: web.Request) -> web.Response:
        body = await self._timeline(_timeline_filter(request), as_json=True)
        return web.Response(text=body, content_type="application/json")

    async def api_logs(self, request: web.Request) -> web.Response:
        return web.json_response({"logs": await self.reader.run(log_names, self.backend.root, key="lognames")})

    async def api_log(self, request: web.Request) -> web.Response:
        name = request.query.get("name", "watcher")
        if name not in logtail.LOGS:
            raise Refusal(404, T.UNKNOWN_LOG.format(name=name, known=" ".join(logtail.LOGS)))
        offset = _number(request, "offset", None, 0)
        lines = int(_number(request, "lines", logtail.TAIL_LINES, 1, 2000))
        got = await self.reader.run(logtail.tail, self.backend.root.component_log(name),
                                    None if offset is None else int(offset), lines)
        return web.json_response({"name": name, **got})

    def _action(self, request: web.Request) -> Action:
        action = self.actions.get(request.match_info["id"])
        if action is None:
            raise Refusal(404, T.UNKNOWN_ACTION.format(id=request.match_info["id"]))
        return action

    async def api_actions(self, request: web.Request) -> web.Response:
        return web.json_response({"actions": [a.to_dict() for a in self.actions.recent()]})

    async def api_action(self, request: web.Request) -> web.Response:
        after = int(_number(request, "after", 0, 0, 1e9))
        return web.json_response(self._action(request).to_dict(after))

    async def api_action_events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the action as it goes (one `data:` JSON per change), then `event: end`."""
        action = self._action(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        sent, seen = 0, -1
        try:
            while True:
                if await action.changed(seen, SSE_HEARTBEAT):
                    seen = action.version
                    snap = action.to_dict(sent)
                    sent = snap["count"]
                    async with asyncio.timeout(SSE_HEARTBEAT):
                        await resp.write(f"data: {json.dumps(snap)}\n\n".encode())
                    if action.done:
                        await resp.write(b"event: end\ndata: {}\n\n")
                        break
                    await asyncio.sleep(SSE_COALESCE)
                else:
                    async with asyncio.timeout(SSE_HEARTBEAT):
                        await resp.write(b": keep-alive\n\n")
        except (ConnectionError, TimeoutError):
            pass  # the page went away, or reads too slowly to be worth waiting for
        return resp

    # -- actions ----------------------------------------------------------------------------------
    async def _act(self, request: web.Request, kind: str, target: str, start) -> web.Response:
        opts = await action_options(request)
        action = self.actions.create(kind, target, request.remote or "unknown")
        try:
            work = start(action)
        except Refused as e:
            action.finish(False, str(e))
            raise Refusal(409, str(e)) from None
        task = self.actions.run(action, work)
        if opts.get("wait"):
            done, _ = await asyncio.wait({task}, timeout=opts["wait"])
            if done:
                return web.json_response({"action": action.to_dict(), "url": f"/api/actions/{action.id}"})
        return web.json_response({"action": action.to_dict(), "url": f"/api/actions/{action.id}"}, status=202)

    async def act_restart(self, request: web.Request) -> web.Response:
        unit = request.match_info["unit"]
        if not self.backend.known_unit(unit):
            raise Refusal(404, T.UNKNOWN_UNIT.format(name=unit, known=" ".join(UNITS)))
        return await self._act(request, "restart", unit, lambda a: self.backend.restart(unit, a))

    def _component(self, request: web.Request) -> str:
        name = request.match_info["component"]
        if name not in START_ORDER:
            raise Refusal(404, T.UNKNOWN_COMPONENT.format(name=name, known=" ".join(START_ORDER)))
        return name

    async def act_stop(self, request: web.Request) -> web.Response:
        c = self._component(request)
        return await self._act(request, "stop", c, lambda a: self.backend.stop(c, a))

    async def act_start(self, request: web.Request) -> web.Response:
        c = self._component(request)
        return await self._act(request, "start", c, lambda a: self.backend.start(c, a))

    async def act_probe(self, request: web.Request) -> web.Response:
        return await self._act(request, "probe", "msprobe", self.backend.probe)
