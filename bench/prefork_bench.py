"""Issue 14's figures for pre-forked built-in servers, with `local.watcher.prefork` yes and no in one run.

    python bench/prefork_bench.py [--rounds 5] [--only start] [--modes yes]

`--only start` runs the whole-suite part alone (cold and warm start-msg, PSS), `--rounds` of it;
`--modes yes` (or no) measures one mode.

For each mode, in a temporary MSGSRV_BASE on free ports with local.autorestart yes (1 s window, so a
round never spends the restart budget):

- crash -> greet, imap alone: only imap is enabled, so the store group's restart is imap alone; kill
  -9 imapd, then the time until a new imapd greets `* OK` (what a fork saves, nothing else); once
  more with `local.watcher.cgroups no` (where the watcher may make cgroups, joining one is a kernel
  cost of its own: cgroup.procs waits for the cgroup rwsem; a forked server joins from a thread
  while it binds, so that cost is off the greeting's path but still before its registration);
- crash -> greet, store group: store, imap, pop, http enabled (the seed's restart: stop http, pop,
  store; start store, check it, imap, pop, http); kill -9 imapd, then the time until a new imapd
  greets and until http answers GET /health;
- whole suite up: every component enabled by default, `start-msg` from a cold start (watcher
  launched too) and warm (watcher up, every server stopped before);
- PSS of the watcher and every server (`watcher status --json`, pss_total), the whole suite up.

Every wait has a deadline. The machine is shared: compare the two modes within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hang_bench import greets  # the same directory: bench/
from watcher_bench import PARAMS, free_ports, pids, print_table

BIN = Path(sys.executable).parent
DEADLINE = 30.0  # seconds any one wait may take
COMPONENTS = ("ens", "store", "imap", "pop", "cert", "http", "sched", "dispatcher", "job_controller")
OFF = {"local.ens.enable": "no", "local.cert.enable": "no", "local.sched.enable": "no", "local.imta.enable": "no"}


class Root:
    def __init__(self, prefork: str, settings: dict[str, str]):
        self.base = Path(tempfile.mkdtemp()) / "root"
        self.env = dict(os.environ, MSGSRV_BASE=str(self.base))
        self.ports = dict(zip(PARAMS, free_ports(len(PARAMS))))
        every = {**{k: str(v) for k, v in self.ports.items()}, "local.autorestart": "yes",
                 "local.autorestart.timeout": "1", "local.schedule.msprobe.enable": "no",
                 "local.watcher.prefork": prefork, **settings}
        self.base.mkdir(parents=True)
        (self.base / "s.txt").write_text("".join(f"{k}={v}\n" for k, v in every.items()))
        self.run("configutil", "-i", str(self.base / "s.txt"))

    def run(self, *argv: str) -> float:
        """Run a command to its end (DEADLINE); seconds it took."""
        t0 = time.monotonic()
        proc = subprocess.Popen([BIN / argv[0], *argv[1:]], env=self.env, stdout=subprocess.DEVNULL)
        # a wait with a timeout polls in steps of up to 50 ms (subprocess's _wait), which made every
        # figure up to 50 ms late; a plain blocking wait, with a timer for the deadline, does not
        timer = threading.Timer(DEADLINE, proc.kill)
        timer.start()
        try:
            status = proc.wait()
        finally:
            timer.cancel()
        took = time.monotonic() - t0
        if status != 0:
            raise subprocess.CalledProcessError(status, argv)
        return took

    def status(self) -> dict:
        r = subprocess.run([BIN / "watcher", "status", "--json"], env=self.env, capture_output=True, text=True,
                           timeout=DEADLINE)
        return json.loads(r.stdout)

    def stop(self) -> None:
        subprocess.run([BIN / "stop-msg", "-f"], env=self.env, stdout=subprocess.DEVNULL, timeout=60)


def http_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(0.5)
            s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


def until(pred, t0: float) -> float:
    """Milliseconds from T0 until PRED() holds (polled every 1 ms); SystemExit after DEADLINE."""
    while not pred():
        if time.monotonic() - t0 > DEADLINE:
            raise SystemExit(f"not within {DEADLINE:.0f} s")
        time.sleep(0.001)
    return (time.monotonic() - t0) * 1000


def all_running(root: Root, names) -> None:
    t0 = time.monotonic()
    until(lambda: all(c["state"] == "RUNNING" for c in root.status()["components"] if c["name"] in names), t0)


def crash_rounds(root: Root, rounds: int, with_http: bool) -> tuple[list[float], list[float]]:
    imap_port, http_port = root.ports["service.imap.port"], root.ports["service.http.port"]
    greet, http = [], []
    for _ in range(rounds):
        old = pids(root.base, "imap")[0]
        old_http = set(pids(root.base, "http"))
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()
        # the old imapd's socket closed with it: any greeting now is from a new one
        greet.append(until(lambda: greets(imap_port), t0))
        if with_http:
            # the old http is stopped before its successor is spawned: a new pid that answers is the new one
            def new_http(old_http=old_http) -> bool:
                return bool((p := pids(root.base, "http")) and not set(p) & old_http and http_answers(http_port))

            http.append(until(new_http, t0))
        all_running(root, ("store", "imap", "pop", "http") if with_http else ("imap",))
        time.sleep(1.2)  # let the 1 s restart window pass
    return greet, http


def fig(xs: list[float], unit: str = "ms") -> str:
    if not xs:
        return "-"
    return f"{statistics.median(xs):.0f} {unit} (min {min(xs):.0f}, max {max(xs):.0f})"


def measure(prefork: str, rounds: int, only: str | None = None) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("alone", "bare", "group", "http")}
    if only == "start":
        return {**out, **whole_suite(prefork, rounds)}
    alone = Root(prefork, {**OFF, "local.store.enable": "no", "service.pop.enable": "no",
                           "service.http.enable": "no"})
    try:
        alone.run("start-msg")
        out["alone"], _ = crash_rounds(alone, rounds, with_http=False)
    finally:
        alone.stop()
    # the same without a cgroup per server: joining one (cgroup.procs) is a kernel cost of its own
    bare = Root(prefork, {**OFF, "local.store.enable": "no", "service.pop.enable": "no",
                          "service.http.enable": "no", "local.watcher.cgroups": "no"})
    try:
        bare.run("start-msg")
        out["bare"], _ = crash_rounds(bare, rounds, with_http=False)
    finally:
        bare.stop()
    group = Root(prefork, OFF)
    try:
        group.run("start-msg")
        out["group"], out["http"] = crash_rounds(group, rounds, with_http=True)
    finally:
        group.stop()
    return {**out, **whole_suite(prefork, max(1, rounds // 2))}


def whole_suite(prefork: str, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"cold": [], "warm": [], "pss": [], "procs": []}
    for _ in range(rounds):
        whole = Root(prefork, {})
        try:
            out["cold"].append(whole.run("start-msg") * 1000)
            time.sleep(1.0)  # settled: the servers' first requests done
            st = whole.status()
            out["pss"].append(st["pss_total"] / 2 ** 20)
            out["procs"].append(1 + sum(len(c["pids"]) for c in st["components"]))
            whole.run("stop-msg", *COMPONENTS)
            out["warm"].append(whole.run("start-msg", *COMPONENTS) * 1000)
        finally:
            whole.stop()
    return out


def compiled() -> None:
    """Byte-compile msgsrv as `pip install .` does: an editable install under PYTHONDONTWRITEBYTECODE
    (set on the development machine) would otherwise compile ~80 modules from source in every
    process, ~85 ms of the watcher's start alone, which no installed suite pays."""
    import compileall

    import msgsrv

    compileall.compile_dir(Path(msgsrv.__file__).parent, quiet=1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=("start",), help="only the whole suite's start-msg (cold, warm) and PSS")
    ap.add_argument("--modes", nargs="+", choices=("yes", "no"), default=["yes", "no"])
    args = ap.parse_args()
    compiled()
    modes = tuple(args.modes)
    res = {mode: measure(mode, args.rounds, args.only) for mode in modes}
    rows = []
    what = [
        ("alone", "kill -9 imapd -> a new imapd greets * OK (imap alone in the store group)", "<= 15 ms"),
        ("bare", "kill -9 imapd -> a new imapd greets * OK (imap alone, local.watcher.cgroups no)", "<= 15 ms"),
        ("group", "kill -9 imapd -> a new imapd greets * OK (store group: store imap pop http)", "-"),
        ("http", "store-group restart: kill -9 imapd -> http answers", "<= 150 ms"),
        ("cold", "whole suite up: start-msg, watcher launched too", "<= 300 ms"),
        ("warm", "whole suite up: start-msg, watcher already up", "<= 300 ms"),
    ]
    for key, text, goal in what:
        if args.only == "start" and key not in ("cold", "warm"):
            continue
        for mode in modes:
            rows.append((f"{text} [prefork {mode}]", fig(res[mode][key]), goal))
    for mode in modes:
        n = res[mode]["procs"][0] if res[mode]["procs"] else 0
        rows.append((f"PSS, watcher + servers ({n} processes) [prefork {mode}]", fig(res[mode]["pss"], "MiB"),
                     "<= 45 MiB"))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
