"""One msprobe pass: probe every target concurrently, judge, ask for restarts, check disks,
record history, raise alarms. The decisions come from verdict.py; this module only acts.

Order matters for speed: the probes run together under asyncio.gather, so a pass costs the
longest timeout once; the verdicts are handed to ON_VERDICTS (the CLI prints them) before the
reports to the watcher, which answers as soon as it has decided (it does not wait for the restart).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from msgsrv import logfmt
from msgsrv.components import COMPONENTS, PROBE_SERVICES, PROBE_TARGETS
from msgsrv.config.store import ConfigStore
from msgsrv.paths import ServerRoot
from msgsrv.probe import messages as M
from msgsrv.probe import verdict, watchdog
from msgsrv.probe.checks import TLS_SERVICES, ProbeResult, probe
from msgsrv.probe.verdict import Status

SOURCE = "msprobe"


@dataclass(frozen=True)
class Target:
    service: str
    component: str
    port: int
    warn: float
    timeout: float
    host: str = "127.0.0.1"
    tls: bool = False  # an implicit-TLS port (checks.TLS_SERVICES)


@dataclass(frozen=True)
class Outcome:
    target: Target
    result: ProbeResult
    status: Status

    def to_dict(self) -> dict:
        return {"service": self.target.service, "component": self.target.component, "port": self.target.port,
                "elapsed": round(self.result.elapsed, 4), "status": self.status.value,
                "detail": self.result.detail, "warningthreshold": self.target.warn,
                "timeout": self.target.timeout}


@dataclass(frozen=True)
class DiskFigure:
    name: str  # store | queue
    path: str
    free_percent: float | None  # None: could not be measured
    threshold: float
    low: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "free_percent": self.free_percent,
                "threshold": self.threshold, "low": self.low, "detail": self.detail}


@dataclass
class PassReport:
    outcomes: list[Outcome] = field(default_factory=list)
    disks: list[DiskFigure] = field(default_factory=list)
    restarts: list[list[str]] = field(default_factory=list)  # unit members asked for
    watcher: watchdog.WatcherCheck | None = None  # the watcher's own check (watchdog.py), when made
    errors: list[str] = field(default_factory=list)  # console lines (also in the default log)
    notes: list[str] = field(default_factory=list)  # other things done (alarms, restarts)

    @property
    def healthy(self) -> bool:
        return (all(o.status.healthy for o in self.outcomes) and not any(d.low for d in self.disks)
                and (self.watcher is None or self.watcher.healthy))

    def to_dict(self) -> dict:
        return {"healthy": self.healthy, "services": [o.to_dict() for o in self.outcomes],
                "disks": [d.to_dict() for d in self.disks], "restarts": self.restarts,
                "watcher": self.watcher.to_dict() if self.watcher else None, "errors": self.errors}


# -- what to probe ------------------------------------------------------------------------------
def enabled_components(store: ConfigStore) -> list[str]:
    return [c.name for c in COMPONENTS if store.get_bool(c.enable)]


def _param(store: ConfigStore, specific: str, general: str, fallback: float) -> float:
    v = store.value(specific)
    if v is None:
        v = store.value(general, fallback)
    return float(fallback if v is None else v)


# client-facing services listen on service.listenaddr (services/base.py public_host)
PUBLIC = ("imap", "pop", "http", "smtp", "lmtp", "mmp")
WILDCARDS = ("", "0.0.0.0", "::", "*")


def probe_host(service: str, listenaddr: str) -> str:
    """Where SERVICE answers: its listen address when one is set, else loopback."""
    return listenaddr if service in PUBLIC and listenaddr not in WILDCARDS else "127.0.0.1"


def targets(store: ConfigStore, services: list[str] | None = None) -> list[Target]:
    """SERVICES (all enabled ones when None) with their ports and thresholds (reference §4.2)."""
    listenaddr = store.get_str("service.listenaddr", "").strip()
    if services is None:
        enabled = set(enabled_components(store))
        services = [s for s in PROBE_SERVICES if PROBE_TARGETS[s][0] in enabled
                    and store.get_bool(f"local.probe.{s}.enable")
                    and (s not in TLS_SERVICES or store.get_bool(TLS_SERVICES[s]))]
    out = []
    for s in services:
        component, port_param = PROBE_TARGETS[s]
        out.append(Target(
            s, component, store.get_int(port_param),
            warn=_param(store, f"local.probe.{s}.warningthreshold", "local.probe.warningthreshold", 5.0),
            timeout=_param(store, f"local.probe.{s}.timeout", "service.readtimeout", 10.0),
            host=probe_host(s, listenaddr), tls=s in TLS_SERVICES))
    return out


async def probe_all(items: list[Target], tls: ssl.SSLContext | None = None) -> list[ProbeResult]:
    """Every probe at once: the pass costs its longest timeout, not their sum."""
    return list(await asyncio.gather(*(probe(t.service, t.port, t.timeout, t.host, tls=tls if t.tls else None)
                                       for t in items)))


def judge(items: list[Target], results: list[ProbeResult]) -> list[Outcome]:
    return [Outcome(t, r, verdict.classify(r, t.warn, t.timeout)) for t, r in zip(items, results, strict=True)]


def _t(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _n(x: float) -> str:
    return str(int(x)) if float(x) == int(x) else f"{x:g}"


# -- the pass -------------------------------------------------------------------------------------
async def run_pass(root: ServerRoot, services: list[str] | None = None,
                   on_verdicts: Callable[[list[Outcome]], None] | None = None) -> PassReport:
    root.ensure()
    store = ConfigStore(root.config_file)
    named = services is not None and "watcher" in services
    if named:
        services = [s for s in services if s != "watcher"]
    items = targets(store, services)
    report = PassReport()
    log = _Logger(root, report)
    if (services is None or named) and watchdog.wanted(store, named):
        # first: a watcher launched again here takes this pass's restart requests
        report.watcher = await asyncio.to_thread(watchdog.check, root, store, watchdog.answer_timeout(store))
        _log_watcher(log, report.watcher)

    began = time.time()
    report.outcomes = judge(items, await probe_all(items, _tls_client(root, store, items)))
    for o in report.outcomes:
        _log_outcome(log, o)
    if on_verdicts is not None:
        on_verdicts(report.outcomes)

    await _restart(root, store, report, log, began)
    # statvfs and sqlite can block (a hung NFS queue dir, a locked counter DB): off the loop, so a
    # pass run inside imsched (issue 14) never stalls imsched's own health port
    if services is None:
        report.disks = await asyncio.to_thread(_check_disks, root, store, log)
    if named and not items:
        return report  # `msprobe watcher`: nothing else was probed
    now = time.time()
    hist = await asyncio.to_thread(_record, root, store, report, log, now)
    await asyncio.to_thread(_alarms, root, store, report, log, hist, now)
    return report


def _tls_client(root: ServerRoot, store: ConfigStore, items: list[Target]) -> ssl.SSLContext | None:
    """The context the TLS probes verify the servers with (it trusts the suite's certificate)."""
    if not any(t.tls for t in items):
        return None
    from msgsrv import tls

    try:
        return tls.client_context(root, store)
    except tls.TlsError:
        return ssl.create_default_context()  # nothing to trust: the probes report the failed handshake


class _Logger:
    def __init__(self, root: ServerRoot, report: PassReport):
        self.root, self.report = root, report

    def __call__(self, severity: str, text: str, console: bool = False) -> None:
        try:
            logfmt.default_log(self.root, SOURCE, severity, text)
        except OSError:
            console = True
        if console:
            self.report.errors.append(f"{severity}: {text}")


def _log_watcher(log: _Logger, w: watchdog.WatcherCheck) -> None:
    for severity, text in w.lines():
        log(severity, text, console=severity != "Info")


def _log_outcome(log: _Logger, o: Outcome) -> None:
    t, r = o.target, o.result
    if o.status is Status.OK:
        log("Info", M.RESPONSE.format(svc=t.service, t=_t(r.elapsed)))
    elif o.status is Status.WARN:
        log("Warning", M.SLOW.format(svc=t.service, t=_t(r.elapsed), warn=_n(t.warn)))
    elif o.status is Status.HUNG:
        log("Error", M.HUNG.format(svc=t.service, timeout=_n(t.timeout)), console=True)
    else:
        log("Error", M.DOWN.format(svc=t.service, detail=r.detail), console=True)


async def _restart(root: ServerRoot, store: ConfigStore, report: PassReport, log: _Logger, began: float) -> None:
    failing = [o for o in report.outcomes if not o.status.healthy]
    if not failing:
        return
    for o in failing:
        if verdict.restart_unit(o.target.service) is None:
            log("Error", M.NOT_RESTARTABLE.format(svc=o.target.service), console=True)
    requests = verdict.restart_request([o.target.service for o in failing], enabled_components(store))
    autorestart = store.get_bool("local.autorestart")
    if not autorestart:
        for members in requests:
            log("Warning", M.AUTORESTART_OFF.format(units=" ".join(members)), console=True)
    else:
        report.restarts = requests
        for members in requests:
            log("Error", M.REQUESTING.format(units=" ".join(members)), console=True)
    # Every failing service is reported to the watcher, which logs it (seed: "fails or does not
    # respond") and decides; all at once, each answered as soon as the watcher has decided.
    answers = await asyncio.gather(*(asyncio.to_thread(_send_report, root, o, began) for o in failing))
    for severity, text in answers:
        if not text:
            continue
        unreachable = text.startswith("unable")
        if unreachable and not autorestart:
            log("Info", text)  # nobody was going to restart it: the default log is enough
            continue
        # an error, and the watcher's reason for not acting (a component stopped by request, a
        # watcher shutting down), are said on the console after "requesting restart of ..."
        log(severity, text, console=severity in ("Error", "Warning"))
        if severity != "Error":
            report.notes.append(text)


def _send_report(root: ServerRoot, o: Outcome, began: float) -> tuple[str, str]:
    """Tell the watcher that O's service does not respond, and word its answer."""
    from msgsrv.control.client import report_hang
    from msgsrv.errors import OperationFailed

    svc = o.target.service
    detail = (f"did not respond within {_n(o.target.timeout)}s" if o.status is Status.HUNG
              else o.result.detail or "no answer")
    requests = verdict.restart_request([svc], [c.name for c in COMPONENTS])
    units = " ".join(requests[0]) if requests else svc
    try:
        answer = report_hang(root, svc, began, detail)
    except OperationFailed as e:
        return "Error", M.RESTART_FAILED.format(units=units, reason=e)
    text = answer.text or units
    words = {"restarting": ("Info", M.RESTART_REQUESTED.format(units=text)),
             "already": ("Info", M.RESTART_ALREADY.format(units=text)),
             "limit": ("Error", M.RESTART_LIMIT.format(text=text)),
             "stale": ("Info", M.RESTART_STALE.format(units=text)),
             "down": ("Warning", M.WATCHER_DID_NOT_ACT.format(svc=svc, text=text))}
    return words.get(answer.outcome, ("Info", ""))  # off / never: already said above


def _disk_paths(root: ServerRoot, store: ConfigStore) -> list[tuple[str, str]]:
    queue = store.get_str("local.queuedir", "") or str(root.queue_dir)
    return [("store", str(root.store_dir)), ("queue", queue)]


def free_percent(path: str) -> float:
    u = shutil.disk_usage(path)
    return 100.0 * u.free / u.total if u.total else 0.0


def _check_disks(root: ServerRoot, store: ConfigStore, log: _Logger) -> list[DiskFigure]:
    if store.get_int("alarm.diskavail.msgalarmstatinterval", 3600) == 0:
        return []
    threshold = store.get_float("alarm.diskavail.msgalarmthreshold", 10.0)
    direction = store.get_int("alarm.diskavail.msgalarmthresholddirection", -1)
    out = []
    for name, path in _disk_paths(root, store):
        try:
            pct = free_percent(path)
        except OSError as e:
            reason = (e.strerror or str(e)).lower()
            log("Error", M.DISK_FAILED.format(name=name, path=path, reason=reason), console=True)
            out.append(DiskFigure(name, path, None, threshold, True, reason))
            continue
        low = verdict.alarm_condition(pct, threshold, direction)
        if low:
            log("Error", M.DISK_LOW.format(name=name, path=path, pct=f"{pct:.1f}", threshold=_n(threshold)),
                console=True)
        else:
            log("Info", M.DISK.format(name=name, path=path, pct=f"{pct:.1f}"))
        out.append(DiskFigure(name, path, round(pct, 2), threshold, low))
    return out


def _record(root: ServerRoot, store: ConfigStore, report: PassReport, log: _Logger, now: float):
    from msgsrv.probe.history import History

    hist = History(root.history_db, store.get_float("local.probe.history.days", 30.0))
    samples = [(o.target.service, o.result.elapsed, o.status.healthy) for o in report.outcomes]
    samples += [(f"disk:{d.name}", d.free_percent, not d.low) for d in report.disks if d.free_percent is not None]
    try:
        aside = hist.record(samples, now)
    except Exception as e:  # sqlite3.Error or OSError: history is never worth failing a pass
        log("Error", M.HISTORY_FAILED.format(path=root.history_db, reason=e), console=True)
        return None
    if aside:
        log("Warning", M.HISTORY_DAMAGED.format(path=root.history_db, aside=aside), console=True)
    return hist


def _alarms(root: ServerRoot, store: ConfigStore, report: PassReport, log: _Logger, hist, now: float) -> None:
    from msgsrv.probe.alarms import Alarm, raise_alarm

    alarms: list[Alarm] = []
    host = socket.gethostname()

    def extremes(series: str, value: float) -> tuple[float, float]:
        try:
            found = hist.extremes(series) if hist is not None else None
        except Exception:  # a broken counter DB still lets the alarm go out
            found = None
        return found or (value, value)

    sr = "alarm.serverresponse."
    if store.get_int(sr + "msgalarmstatinterval", 600) != 0:
        threshold = store.get_float(sr + "msgalarmthreshold", 10.0)
        direction = store.get_int(sr + "msgalarmthresholddirection", 1)
        for o in report.outcomes:
            value = o.result.elapsed
            if o.status is Status.DOWN or not verdict.alarm_condition(value, threshold, direction):
                continue
            lo, hi = extremes(o.target.service, value)
            alarms.append(Alarm("serverresponse", f"{o.target.service}_{host}_{o.target.port}",
                                store.get_str(sr + "msgalarmdescription", "server response time in seconds"),
                                value, threshold, direction, lo, hi,
                                store.get_int(sr + "msgalarmstatinterval", 600), now))
    da = "alarm.diskavail."
    for d in report.disks:
        if not d.low or d.free_percent is None:
            continue
        lo, hi = extremes(f"disk:{d.name}", d.free_percent)
        alarms.append(Alarm("diskavail", d.name,
                            store.get_str(da + "msgalarmdescription", "percentage mail partition diskspace available"),
                            d.free_percent, d.threshold, store.get_int(da + "msgalarmthresholddirection", -1), lo, hi,
                            store.get_int(da + "msgalarmstatinterval", 3600), now))
    for a in alarms:
        try:
            outcome = raise_alarm(root, store, a, now)
        except OSError as e:  # the alarm state file: logged, never fatal
            outcome = f"unable to keep alarm state: {e.strerror or e}"
        failed = outcome.startswith("unable")
        log("Error" if failed else "Info", M.ALARM.format(key=a.key, outcome=outcome), console=failed)
        report.notes.append(M.ALARM.format(key=a.key, outcome=outcome))


def known_service(name: str) -> bool:
    return name in PROBE_TARGETS
