"""The watcher's files in data/run/: the run record, the supervision state and the pid files.

    watcher.json       the running watcher: {"pid", "start_ticks", "port", "started", "ha", "boot_id",
                       "manager"}.
                       Written once it listens, removed when it exits cleanly. Every command finds
                       the running watcher here first (its port may differ from local.watcher.port
                       after a configutil change); one left behind names a watcher that died.
    supervision.json   what must survive the watcher: the restart budget (grant times per unit, on
                       the boot's monotonic clock), restarts per unit, per component whether it is
                       wanted up and its last failure (state, exit status and time), the restarts
                       queued or under way, and the last configuration that parsed.
    <component>.pid    JSON list of {pid, start_ticks, worker, started, cgroup} per process
                       (start_ticks: procinfo.py; records of 0.2.0 have create_time instead).

All of them are records, not preconditions (issue 10, "a full disk is not a crash"): a write that
fails is remembered, reported once, retried on the next change and by a timer, and supervision
goes on from memory. Writes are atomic (atomicfile.write_atomic), files 0600.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from msgsrv import messages as M
from msgsrv import procinfo
from msgsrv.atomicfile import write_atomic
from msgsrv.control.runrecord import NAME as RUN_RECORD  # noqa: F401 (the watcher writes it)
from msgsrv.control.runrecord import live_watcher, run_record  # noqa: F401 (the watcher's view)

STATE = "supervision.json"
RETRY_EVERY = 2.0  # seconds between attempts to write records that failed (only while some did)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def read_json(path: Path):
    """PATH's JSON, or None when it is missing or unreadable as JSON. A file that may not be read
    (another user's server root) is not "no record": PermissionError goes to the caller."""
    try:
        return json.loads(path.read_bytes())
    except PermissionError:
        raise
    except (OSError, ValueError):
        return None


# -- writing, with a memory of what could not be written ------------------------------------------
class Recorder:
    """Writes records atomically; a failed write is kept and retried (see the module docstring)."""

    def __init__(self, report: Callable[[str], None]):
        self.report = report
        self.pending: dict[Path, bytes | None] = {}  # path -> data (None: remove)
        self._reported: set[Path] = set()
        self._transient: set[Path] = set()

    def write(self, path: Path, data: bytes | str | None, durable: bool = True) -> bool:
        """DURABLE false: a record of this boot only (pid files, the run record; read_state
        drops what another boot wrote): atomic, without the fsyncs a crash of the machine needs."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.pending[path] = data
        if durable:
            self._transient.discard(path)
        else:
            self._transient.add(path)
        return self._try(path)

    def _try(self, path: Path) -> bool:
        data = self.pending.get(path)
        try:
            if data is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                write_atomic(path, data, durable=path not in self._transient)
        except OSError as e:
            if path not in self._reported:
                self._reported.add(path)
                self.report(M.RECORD_FAILED.format(path=path, reason=(e.strerror or str(e)).lower()))
            return False
        del self.pending[path]
        if path in self._reported:
            self._reported.discard(path)
            self.report(M.RECORD_WRITTEN.format(path=path))
        return True

    def flush(self) -> bool:
        """Retry every pending write; True when none is left."""
        for path in list(self.pending):
            self._try(path)
        return not self.pending


def state_snapshot(now_mono: float, budget: dict, totals: dict, components: dict, pending: list[dict],
                   config: dict[str, str] | None) -> str:
    """CONFIG: the last configuration that parsed; None (no key) when none has parsed here."""
    data = {"boot_id": boot_id(), "written": time.time(), "mono": now_mono, "budget": budget,
            "restarts_total": totals, "components": components, "pending": pending}
    if config is not None:
        data["config"] = config
    return json.dumps(data, separators=(",", ":"))


def read_state(run_dir: Path) -> dict:
    """The saved supervision state. From another boot, only what a reboot keeps: the last good
    configuration, what was meant to run, what was given up (not the budget, the restarts under
    way or counted, the last exits or a start under way: they were of processes of that boot)."""
    path = Path(run_dir) / STATE
    data = read_json(path)
    if not isinstance(data, dict):
        return {"damaged": True} if path.exists() else {}
    data = sane_state(data)
    if data.get("boot_id") != boot_id():  # another boot (or a record that does not say)
        for key in ("budget", "pending", "restarts_total"):
            data.pop(key, None)
        for facts in (data.get("components") or {}).values():
            if isinstance(facts, dict):
                facts.pop("last_exit", None)
                facts.pop("start_pending", None)
    return data


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _strings(x) -> bool:
    return isinstance(x, list) and all(isinstance(s, str) for s in x)


def _fact(f: dict) -> dict:
    """One component's saved facts, each kept only in the shape the watcher wrote it."""
    out = {}
    for key in ("wanted", "start_pending"):
        if isinstance(f.get(key), bool):
            out[key] = f[key]
    for key in ("state", "reason"):
        if key in f and (f[key] is None or isinstance(f[key], str)):
            out[key] = f[key]
    e = f.get("last_exit")
    if e is None and "last_exit" in f or isinstance(e, dict) and all(
            e.get(k) is None or _number(e[k]) for k in ("pid", "status", "time")) \
            and (e.get("how") is None or isinstance(e["how"], str)):
        out["last_exit"] = e
    return out


def sane_state(data: dict) -> dict:
    """DATA with whatever is not in the shape the watcher writes left out (a file written over or
    by hand must never keep a watcher from starting); "damaged": True when anything was."""
    out: dict = {}
    if isinstance(data.get("boot_id"), str):
        out["boot_id"] = data["boot_id"]
    for key in ("written", "mono"):
        if _number(data.get(key)):
            out[key] = data[key]
    budget = data.get("budget", {})
    if isinstance(budget, dict):
        out["budget"] = {u: t for u, t in budget.items() if isinstance(t, list) and all(_number(x) for x in t)}
    totals = data.get("restarts_total", {})
    if isinstance(totals, dict):
        out["restarts_total"] = {u: n for u, n in totals.items() if isinstance(n, int) and not isinstance(n, bool)
                                 and n >= 0}
    comps = data.get("components", {})
    if isinstance(comps, dict):
        out["components"] = {c: _fact(f) for c, f in comps.items() if isinstance(f, dict)}
    pending = data.get("pending", [])
    if isinstance(pending, list):
        out["pending"] = [p for p in pending if isinstance(p, dict) and isinstance(p.get("unit"), str)
                          and _strings(p.get("members")) and (p.get("cause") is None or isinstance(p["cause"], str))
                          and _strings(p.get("hung", []))]
    config = data.get("config")
    if isinstance(config, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in config.items()):
        out["config"] = config
    known = {"boot_id", "written", "mono", "budget", "restarts_total", "components", "pending", "config"}
    if any(k not in out or out[k] != data[k] for k in known & set(data)):
        out["damaged"] = True
    return out


def other_boot(recorded: str | None) -> bool:
    """RECORDED (a boot id written with a record) names a boot other than this one: the system
    has restarted since, and no process of that record can still run. False when either is not
    known (a record without one): then its processes are looked for, and a missing one is a
    failure, as it would be in this boot."""
    current = boot_id()
    return bool(recorded) and bool(current) and recorded != current


def pid_records(path: Path) -> list[dict]:
    """The records of PATH in the shape the watcher writes them: a pid that cannot be a server's
    (not a number, 1 or below) is left out; a start time, worker, start or cgroup of the wrong shape
    is taken as not recorded (a pid without a start time must then show it is this root's)."""
    data = read_json(path)
    if not isinstance(data, list):
        return []
    out = []
    for d in data:
        if not isinstance(d, dict) or not isinstance(d.get("pid"), int) or isinstance(d["pid"], bool) or d["pid"] <= 1:
            continue
        worker = d.get("worker")
        ticks = d.get("start_ticks")
        out.append({"pid": d["pid"], "create_time": d["create_time"] if _number(d.get("create_time")) else None,
                    "start_ticks": ticks if isinstance(ticks, int) and not isinstance(ticks, bool) and ticks >= 0 else None,
                    "worker": worker if isinstance(worker, int) and not isinstance(worker, bool) and worker >= 0 else 0,
                    "started": d["started"] if _number(d.get("started")) else None,
                    "cgroup": d["cgroup"] if isinstance(d.get("cgroup"), str) else None})
    return out


def write_pid_records(recorder: Recorder, path: Path, records: list[dict]) -> None:
    recorder.write(path, json.dumps(records) if records else None, durable=False)


def own_pid_record() -> dict:
    me = os.getpid()
    return {"pid": me, "start_ticks": procinfo.start_ticks(me), "started": time.time()}
