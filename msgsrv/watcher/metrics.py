"""Prometheus metrics from the watcher, on 127.0.0.1:local.watcher.metricsport (issue 7).

The exposition format is prometheus-client's own (`generate_latest` over metric families built per
scrape); the HTTP side is a small asyncio listener inside the watcher's loop rather than
prometheus-client's `start_http_server`, whose thread would read the Supervisor's state from outside
the loop that changes it. Each scrape reads one consistent snapshot: `Supervisor.status()` and the
restart counters in the loop, then the newest msprobe samples from the history database (read-only,
in a worker thread so a locked database never stalls supervision).

Series (labels in braces):

    msgsrv_component_up{component}                1 while RUNNING with at least one process
    msgsrv_component_state{component,state}       1 for the current state, 0 for the others
    msgsrv_component_fatal{component}             1 in FATAL (restart budget spent or start failed)
    msgsrv_component_processes{component}         processes supervised
    msgsrv_component_uptime_seconds{component}    age of the oldest process (absent when none)
    msgsrv_restarts_total{unit}                   unit restarts since this watcher started
    msgsrv_restarts_in_window{unit}               restarts inside local.autorestart.timeout
    msgsrv_restart_limit                          restarts allowed per window (SPEC §1: 2)
    msgsrv_restart_window_seconds                 local.autorestart.timeout
    msgsrv_watcher_ha                             1 when the watcher runs in HA mode
    msgsrv_probe_response_seconds{service}        last msprobe response time
    msgsrv_probe_healthy{service}                 1 when that probe was healthy
    msgsrv_probe_timestamp_seconds{service}       when that probe ran (Unix time)
    msgsrv_disk_free_percent{disk}                last free-space figure msprobe recorded
    msgsrv_disk_timestamp_seconds{disk}           when it was recorded
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import exposition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from msgsrv import forkguard
from msgsrv.components import COMPONENTS
from msgsrv.watcher.states import State

HOST = "127.0.0.1"  # SPEC §3: the watcher's ports are loopback only
PATH = "/metrics"
MAX_REQUEST = 8192  # request line plus headers
READ_TIMEOUT = 5.0
DISK_PREFIX = "disk:"
LISTEN_FAILED = "watcher: unable to serve metrics on {host}:{port}: {reason}"

# The classic text format every Prometheus reads; our names need none of 1.0.0's escaping, and
# prometheus-client before 0.22 has only this one (as CONTENT_TYPE_LATEST).
CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", exposition.CONTENT_TYPE_LATEST)
UNITS: tuple[str, ...] = tuple(dict.fromkeys(c.unit for c in COMPONENTS if c.unit))


# -- the snapshot and the pure rendering -------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    value: float
    ok: bool
    ts: float


@dataclass(frozen=True)
class Snapshot:
    components: list[dict]  # Supervisor.status()["components"]
    restarts_total: dict[str, int] = field(default_factory=dict)
    restart_limit: int = 2
    window: float = 600.0
    ha: bool = False
    samples: dict[str, Sample] = field(default_factory=dict)  # history series -> newest sample


def families(snap: Snapshot) -> list[Metric]:
    """The metric families for one scrape; pure (plain values in, prometheus-client objects out)."""
    up = GaugeMetricFamily("msgsrv_component_up", "1 while the component runs", labels=["component"])
    state = GaugeMetricFamily("msgsrv_component_state", "Current watcher state of the component (one-hot)",
                              labels=["component", "state"])
    fatal = GaugeMetricFamily("msgsrv_component_fatal", "1 when the watcher has given up on the component",
                              labels=["component"])
    procs = GaugeMetricFamily("msgsrv_component_processes", "Processes the watcher supervises for the component",
                              labels=["component"])
    frozen = GaugeMetricFamily("msgsrv_component_frozen_processes",
                               "Processes of the component stopped by a signal or a debugger (they answer nothing)",
                               labels=["component"])
    uptime = GaugeMetricFamily("msgsrv_component_uptime_seconds", "Age of the component's oldest process",
                               labels=["component"])
    in_window = GaugeMetricFamily("msgsrv_restarts_in_window",
                                  "Restarts of the unit inside local.autorestart.timeout", labels=["unit"])
    window_count: dict[str, int] = {}
    for row in snap.components:
        c, st = row["name"], row["state"]
        pids = row.get("pids") or []
        up.add_metric([c], 1.0 if st == State.RUNNING.value and pids else 0.0)
        for s in State:
            state.add_metric([c, s.value], 1.0 if st == s.value else 0.0)
        fatal.add_metric([c], 1.0 if st == State.FATAL.value else 0.0)
        procs.add_metric([c], float(len(pids)))
        frozen.add_metric([c], float(len(row.get("frozen") or ())))
        if row.get("uptime") is not None:
            uptime.add_metric([c], float(row["uptime"]))
        if row.get("unit"):
            window_count[row["unit"]] = max(window_count.get(row["unit"], 0), int(row.get("restarts") or 0))
    total = CounterMetricFamily("msgsrv_restarts", "Restarts of the unit since the watcher started", labels=["unit"])
    for unit in sorted(set(UNITS) | set(snap.restarts_total)):
        total.add_metric([unit], float(snap.restarts_total.get(unit, 0)))
    for unit in sorted(set(UNITS) | set(window_count)):
        in_window.add_metric([unit], float(window_count.get(unit, 0)))
    limit = GaugeMetricFamily("msgsrv_restart_limit", "Restarts allowed per unit inside the window",
                              value=float(snap.restart_limit))
    window = GaugeMetricFamily("msgsrv_restart_window_seconds", "local.autorestart.timeout",
                               value=float(snap.window))
    ha = GaugeMetricFamily("msgsrv_watcher_ha", "1 when the watcher runs in HA mode", value=1.0 if snap.ha else 0.0)

    resp = GaugeMetricFamily("msgsrv_probe_response_seconds", "Response time of the last msprobe pass",
                             labels=["service"])
    healthy = GaugeMetricFamily("msgsrv_probe_healthy", "1 when the last msprobe pass found the service healthy",
                                labels=["service"])
    probe_ts = GaugeMetricFamily("msgsrv_probe_timestamp_seconds", "When the last msprobe pass probed the service",
                                 labels=["service"])
    disk = GaugeMetricFamily("msgsrv_disk_free_percent", "Free disk space msprobe last measured", labels=["disk"])
    disk_ts = GaugeMetricFamily("msgsrv_disk_timestamp_seconds", "When msprobe last measured the disk",
                                labels=["disk"])
    for series in sorted(snap.samples):
        smp = snap.samples[series]
        if series.startswith(DISK_PREFIX):
            name = series[len(DISK_PREFIX):]
            disk.add_metric([name], smp.value)
            disk_ts.add_metric([name], smp.ts)
        else:
            resp.add_metric([series], smp.value)
            healthy.add_metric([series], 1.0 if smp.ok else 0.0)
            probe_ts.add_metric([series], smp.ts)
    return [up, state, fatal, procs, frozen, uptime, total, in_window, limit, window, ha,
            resp, healthy, probe_ts, disk, disk_ts]


class _Families:
    """What generate_latest() expects of a registry: something with collect()."""

    def __init__(self, items: list[Metric]):
        self._items = items

    def collect(self):
        return iter(self._items)


def render(snap: Snapshot) -> bytes:
    return exposition.generate_latest(_Families(families(snap)))  # type: ignore[arg-type]


# -- reading the history database (msprobe writes it; we only read) ------------------------------
def last_samples(db: Path) -> dict[str, Sample]:
    """The newest sample of every series in msprobe's history, {} when there is none yet."""
    if not Path(db).exists():
        return {}
    try:
        rows = forkguard.sqlite_rows(
            db, "SELECT s.series, s.value, s.ok, s.ts FROM samples s "
                "JOIN (SELECT series, MAX(ts) AS ts FROM samples GROUP BY series) m "
                "ON s.series = m.series AND s.ts = m.ts")
    except sqlite3.Error:
        return {}  # no table yet, or locked past the timeout: this scrape has no probe figures
    return {series: Sample(float(value), bool(ok), float(ts)) for series, value, ok, ts in rows}


# -- the HTTP listener ----------------------------------------------------------------------------
class MetricsServer:
    def __init__(self, sup):
        self.sup = sup
        self.server: asyncio.AbstractServer | None = None

    async def snapshot(self) -> Snapshot:
        status = self.sup.status()  # in the loop: a consistent view of the supervisor
        totals = dict(getattr(self.sup, "restarts_total", {}))
        budget = self.sup.budget
        samples = await asyncio.to_thread(last_samples, self.sup.root.history_db)
        return Snapshot(status["components"], totals, budget.limit, budget.window, bool(self.sup.ha), samples)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except asyncio.LimitOverrunError:
                await _reply(writer, 431, b"request header too large\n")
                return
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                await _reply(writer, 400, b"bad request\n")
                return
            method, target = parts[0], parts[1].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                await _reply(writer, 405, b"method not allowed\n", extra=b"Allow: GET, HEAD\r\n")
            elif target == PATH:
                body = render(await self.snapshot())
                await _reply(writer, 200, body, CONTENT_TYPE.encode(), head_only=method == "HEAD")
            elif target == "/":
                await _reply(writer, 200, b"msgsrv watcher: metrics at /metrics\n", head_only=method == "HEAD")
            else:
                await _reply(writer, 404, b"not found\n")
        except (ConnectionError, asyncio.CancelledError):
            pass  # cancelled: the watcher is exiting (no traceback from Python 3.11's stream callback)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self.handle, HOST, port, limit=MAX_REQUEST)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large"}


async def _reply(writer: asyncio.StreamWriter, code: int, body: bytes,
                 ctype: bytes = b"text/plain; charset=utf-8", extra: bytes = b"", head_only: bool = False) -> None:
    head = (f"HTTP/1.1 {code} {_REASONS[code]}\r\n".encode() + b"Content-Type: " + ctype + b"\r\n"
            + f"Content-Length: {len(body)}\r\n".encode() + extra + b"Connection: close\r\n\r\n")
    writer.write(head if head_only else head + body)
    await writer.drain()


async def serve_metrics(sup, port: int) -> MetricsServer:
    """Listen on 127.0.0.1:PORT. A port that cannot be bound is logged as a failure and leaves the
    watcher running without metrics: supervision matters more than its instruments."""
    srv = MetricsServer(sup)
    try:
        await srv.start(port)
    except OSError as e:
        sup.alert(LISTEN_FAILED.format(host=HOST, port=port, reason=e.strerror or e))
    return srv
