"""msprobe speed: prints a table.

    healthy pass     one in-process pass over all 10 probed components (goal < 100 ms)
    3 hung, T        a pass in which 3 services hang, probe timeout T (goal <= T + 0.3 s)
    CPU, 1 s probing the real `imsched` process running msprobe every second over the 10
                     components, CPU of imsched and its children (user + system) over
                     --cpu-seconds, as % of one core: in-process (`lib/msprobe -q`, issue 14,
                     goal <= 1 %) and spawned (the same msprobe named by its absolute path, a
                     new interpreter per pass, as before issue 14)
    hang -> healed   (with --suite) the built-in servers under the real watcher, imsched
                     running `msprobe` every second: from `hang` on imap to imap answering again

Servers are small real asyncio servers on 127.0.0.1 (tests/probe/probe_fakes.py) in this
process, so the numbers measure msprobe and imsched, not the services. Run:

    python bench/probe_bench.py [--runs N] [--timeout T] [--cpu-seconds S] [--suite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "probe"))

from probe_fakes import FakeServers  # noqa: E402

from msgsrv.components import PROBE_TARGETS  # noqa: E402
from msgsrv.config.store import ConfigStore  # noqa: E402
from msgsrv.paths import ServerRoot  # noqa: E402
from msgsrv.probe.runner import run_pass  # noqa: E402

KIND = {"imap": "imap", "pop": "pop", "http": "http", "smtp": "smtp", "lmtp": "lmtp"}
ALL10 = ["ens", "store", "imap", "pop", "cert", "http", "sched", "smtp", "lmtp", "job_controller"]


def root_with(fs: FakeServers, hung: set[str], timeout: float) -> ServerRoot:
    root = ServerRoot(Path(tempfile.mkdtemp(prefix="probe-bench-"))).ensure()
    sets = {"service.readtimeout": str(timeout), "alarm.serverresponse.msgalarmstatinterval": "0",
            "alarm.diskavail.msgalarmstatinterval": "0"}
    for svc in ALL10:
        kind = "hang" if svc in hung else KIND.get(svc, "line")
        sets[PROBE_TARGETS[svc][1]] = str(fs.start(kind))
    ConfigStore(root.config_file).update(sets)
    return root


def timed_pass(root: ServerRoot) -> tuple[float, int]:
    t0 = time.perf_counter()
    report = asyncio.run(run_pass(root, ALL10))
    return time.perf_counter() - t0, sum(1 for o in report.outcomes if not o.status.healthy)


def imsched_cpu(fs: FakeServers, command: str, seconds: float) -> tuple[float, int]:
    """(% of a core, passes) of a real imsched running COMMAND every second for SECONDS."""
    import psutil

    from tests.conftest import command_path, free_port

    root = root_with(fs, set(), 5.0)
    sets = {"local.schedule.msprobe": f"1 {command}", "local.sched.port": str(free_port()),
            "alarm.serverresponse.msgalarmstatinterval": "600", "alarm.diskavail.msgalarmstatinterval": "3600"}
    ConfigStore(root.config_file).update(sets)
    p = subprocess.Popen([command_path("imsched")], env=dict(os.environ, MSGSRV_BASE=str(root.base)),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        log = root.default_log
        deadline = time.monotonic() + 30
        while "exited with status" not in (log.read_text() if log.exists() else ""):  # warmed up: one pass done
            if time.monotonic() > deadline or p.poll() is not None:
                sys.exit(f"probe_bench: imsched ran no pass of {command!r}")
            time.sleep(0.05)
        me = psutil.Process(p.pid)

        def cpu() -> float:
            t = me.cpu_times()
            return t.user + t.system + t.children_user + t.children_system

        before, runs0, t0 = cpu(), log.read_text().count("exited with status"), time.monotonic()
        time.sleep(seconds)
        used, wall = cpu() - before, time.monotonic() - t0
        return 100.0 * used / wall, log.read_text().count("exited with status") - runs0
    finally:
        p.terminate()
        p.wait(10)


def suite_heal(timeout: float) -> float:
    """hang -> answering again, through imsched + msprobe + the watcher (built-in servers)."""
    sys.path.insert(0, str(REPO))
    from tests.conftest import command_path, free_ports, wait_for

    base = Path(tempfile.mkdtemp(prefix="probe-bench-suite-"))
    env = dict(os.environ, MSGSRV_BASE=str(base))
    params = ("local.watcher.port", "local.watcher.httpport", "local.store.port", "service.imap.port", "service.pop.port",
              "service.http.port", "local.sched.port", "service.imap.sslport", "service.pop.sslport",
              "service.http.sslport")
    sets = dict(zip(params, map(str, free_ports(len(params))), strict=True))
    sets.update({"local.autorestart": "yes", "local.imta.enable": "no", "local.ens.enable": "no",
                 "local.cert.enable": "no", "local.schedule.msprobe": "1 lib/msprobe -q imap",
                 "local.probe.imap.timeout": str(timeout)})
    (base / "s.txt").parent.mkdir(parents=True, exist_ok=True)
    (base / "s.txt").write_text("".join(f"{k}={v}\n" for k, v in sets.items()))
    subprocess.run([command_path("configutil"), "-i", str(base / "s.txt")], env=env, check=True)
    subprocess.run([command_path("start-msg")], env=env, check=True, capture_output=True)
    root = ServerRoot(base)
    try:
        import socket

        port = int(sets["service.imap.port"])
        root.fault_file("imap").write_text("hang\n")
        t0 = time.monotonic()
        # imsched probes every second; the watcher restarts the group within a few more
        wait_for(lambda: "Received request to restart" in root.watcher_log.read_text(), timeout=30 + timeout)
        root.fault_file("imap").unlink()

        def greets() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    return s.recv(64).startswith(b"* OK")
            except OSError:
                return False

        wait_for(greets, timeout=30)
        return time.monotonic() - t0
    finally:
        subprocess.run([command_path("stop-msg")], env=env, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--cpu-seconds", type=float, default=30.0, help="length of each CPU measurement")
    ap.add_argument("--suite", action="store_true", help="also measure hang -> healed with the real suite")
    a = ap.parse_args()
    rows = []
    with FakeServers() as fs:
        healthy = root_with(fs, set(), 5.0)
        timed_pass(healthy)  # warm-up: imports, first sqlite file
        times = [timed_pass(healthy)[0] for _ in range(a.runs)]
        rows.append(("healthy pass, 10 components", statistics.median(times), max(times), "< 0.100 s"))
        hung = root_with(fs, {"imap", "smtp", "store"}, a.timeout)
        times = [timed_pass(hung)[0] for _ in range(max(3, a.runs // 5))]
        rows.append((f"3 hung, T = {a.timeout:g} s", statistics.median(times), max(times),
                     f"<= {a.timeout + 0.3:.3f} s"))
        msprobe = str(Path(sys.executable).parent / "msprobe")
        cpu_rows = [("in-process (lib/msprobe -q)", *imsched_cpu(fs, "lib/msprobe -q", a.cpu_seconds), "<= 1 %"),
                    ("spawned (msprobe -q by path)", *imsched_cpu(fs, f"{msprobe} -q", a.cpu_seconds), "-")]
    if a.suite:
        t = suite_heal(a.timeout)
        rows.append((f"hang -> healed (imsched 1 s, T = {a.timeout:g} s)", t, t, "-"))
    print(f"{'case':<44} {'median':>9} {'max':>9}  goal")
    for name, med, mx, goal in rows:
        print(f"{name:<44} {med:>8.3f}s {mx:>8.3f}s  {goal}")
    print()
    print(f"{'imsched + msprobe every 1 s, 10 components':<44} {'CPU':>9} {'passes':>9}  goal")
    for name, pct, passes, goal in cpu_rows:
        print(f"{name:<44} {pct:>8.2f}% {passes:>9}  {goal}")
    ratio = cpu_rows[1][1] / cpu_rows[0][1] if cpu_rows[0][1] else float("inf")
    print(f"({a.cpu_seconds:g} s each, % of one core; spawned / in-process = {ratio:.1f}x, same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
