"""The web console under load: page and API latency while the store group restarts, and whether
polling clients delay crash handling (issue 15).

    python bench/console_bench.py [--clients 20] [--interval 0.5] [--trials 10] [--journal-mb 2]

Starts every built-in component (pop with 4 workers) in a temporary MSGSRV_BASE on free ports,
the console included, with a journal (data/run/journal*.jsonl) already JOURNAL_MB large, as a
watcher that has run for months leaves it (2 MB is its bound). Each client is a logged-in "browser"
on its own keep-alive connection that loads the overview page, polls /api/status and the timeline
(/api/timeline, 200 records), one request every INTERVAL seconds (the overview polls every second,
the timeline page every 2 s). Then TRIALS times each, without the clients and with them
(interleaved):

    kill -9 certd   -> the pid file names a new certd     (a unit of its own)
    kill -9 imapd   -> the pid file names a new mshttpd   (the seed's store-group restart, http last)

and prints a table: crash -> new pid (median, p95) both ways and their ratio (goal: at most +10 %),
p50/p99 latency of the overview, /api/status and /api/timeline for requests made while a
store-group restart was running (each writes about ten journal records the timeline then shows),
and outside one, and the watcher's RSS before and after the console was first used. The machine is
shared: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from msgsrv.watcher import journal  # noqa: E402
from tests.conftest import free_ports  # noqa: E402

BIN = Path(sys.executable).parent
PARAMS = ("local.watcher.port", "local.watcher.httpport", "local.store.port", "service.imap.port",
          "service.pop.port", "service.http.port", "service.smtp.port", "service.lmtp.port", "local.ens.port",
          "local.job_controller.port", "local.cert.port", "local.sched.port", "service.imap.sslport",
          "service.pop.sslport", "service.http.sslport", "service.smtp.sslport", "local.mmp.imapport",
          "local.mmp.popport")
WINDOW = "1"  # local.autorestart.timeout: trials 1.5 s apart are never throttled by the restart budget
GAP = 1.5  # seconds between two kills


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(p / 100 * (len(v) - 1))))]


PATHS = ("/", "/api/status", "/api/timeline?limit=200")


def fill_journal(run_dir: Path, megabytes: float) -> int:
    """A journal about MEGABYTES large (both files), of the records a long life leaves: crashes and
    their restarts. Returns the number of records."""
    for d in (run_dir.parent.parent, run_dir.parent, run_dir):  # the server root's modes (0700)
        d.mkdir(mode=0o700, exist_ok=True)
    t, n, pid = time.time() - 30 * 86400, 0, 10000
    kinds = (("exit", "Watched 'imapd' process {pid} exited abnormally (killed by signal 9 (SIGKILL))"),
             ("restart-queued", "store imap pop http"), ("restart-started", "store imap pop http"),
             ("started", "{pid}"), ("restart-done", "http imap pop store"))
    lines = []
    while sum(map(len, lines)) < megabytes * 2**20:
        kind, detail = kinds[n % len(kinds)]
        rec = journal.record(kind, "imap", "store", pid, detail.format(pid=pid), t=t)
        lines.append(json.dumps(rec, separators=(",", ":")) + "\n")
        t, n, pid = t + 60, n + 1, pid + (n % len(kinds) == 3)
    half = len(lines) // 2 if megabytes > journal.MAX_BYTES / 2**20 else 0
    (run_dir / journal.OLD_NAME).write_text("".join(lines[:half]))
    (run_dir / journal.NAME).write_text("".join(lines[half:]))
    for name in (journal.OLD_NAME, journal.NAME):
        os.chmod(run_dir / name, 0o600)
    return n


class Suite:
    def __init__(self, base: Path):
        self.base = base
        self.env = {**os.environ, "MSGSRV_BASE": str(base)}

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / argv[0]), *argv[1:]], env=self.env, capture_output=True, text=True,
                              timeout=120)

    def start(self, journal_mb: float) -> None:
        self.ports = dict(zip(PARAMS, free_ports(len(PARAMS)), strict=True))
        settings = {**{k: str(v) for k, v in self.ports.items()}, "local.autorestart": "yes",
                    "local.autorestart.timeout": WINDOW, "local.schedule.msprobe.enable": "no",
                    "service.pop.numprocesses": "4"}
        self.base.mkdir(parents=True)
        self.journal_records = fill_journal(self.base / "data" / "run", journal_mb) if journal_mb else 0
        f = self.base.parent / "settings.txt"
        f.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        r = self.run("configutil", "-i", str(f))
        if r.returncode:
            raise SystemExit(r.stderr)
        r = self.run("start-msg")
        if r.returncode:
            raise SystemExit(r.stdout + r.stderr)
        self.url = re.search(r"^Console: (\S+)$", r.stdout, re.M).group(1)

    def stop(self) -> None:
        self.run("stop-msg", "-f")

    def pids(self, c: str) -> list[int]:
        try:
            return [d["pid"] for d in json.loads((self.base / "data" / "run" / f"{c}.pid").read_text())]
        except (OSError, ValueError):
            return []

    @property
    def port(self) -> int:
        return self.ports["local.watcher.httpport"]


async def _browser(port: int, link: str, interval: float, polling, stop, samples: list) -> None:
    """One browser tab: logs in with the token link, then loads the overview, polls the status and
    the timeline."""
    import aiohttp

    paths = PATHS
    # unsafe=True: aiohttp keeps no cookie from a bare IP address otherwise
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=aiohttp.TCPConnector(limit=1),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get("/" + link.split("/", 3)[3], allow_redirects=False) as r:
            await r.read()
            if r.status != 303:
                raise SystemExit(f"login with the token link failed: {r.status}")
        i = 0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            if not polling.is_set():
                await asyncio.sleep(0.05)
                next_at = loop.time()
                continue
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable with the parent's clock
            try:
                async with http.get(path) as r:
                    await r.read()
                    status = r.status
            except aiohttp.ClientError:
                status = 0
            samples.append((t0, time.perf_counter(), path, status))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))


def clients_process(port: int, link: str, n: int, interval: float, polling, stop, results) -> None:
    """N tabs in one asyncio loop, in a process of their own: their work never holds the bench's
    interpreter lock while it times a crash."""
    samples: list = []

    async def main() -> None:
        await asyncio.gather(*(_browser(port, link, interval, polling, stop, samples) for _ in range(n)))

    asyncio.run(main())
    results.put(samples)


def crash(suite: Suite, kill: str, watch: str, deadline: float = 20.0) -> tuple[float, float, float]:
    """kill -9 the first process of KILL; seconds until WATCH's pid file names a new process.
    Returns (seconds, start, end) on the perf_counter clock. The pid file is re-read only when it
    was replaced (the watcher writes it atomically: a new inode), so the wait costs little CPU."""
    path = suite.base / "data" / "run" / f"{watch}.pid"
    old = set(suite.pids(watch))
    victim = suite.pids(kill)[0]
    seen = None
    t0 = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    while True:
        try:
            st = os.stat(path)
            ident = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            ident = None
        if ident != seen:
            seen = ident
            now = suite.pids(watch)
            if now and not set(now) & old:
                t1 = time.perf_counter()
                return t1 - t0, t0, t1
        if time.perf_counter() - t0 > deadline:
            raise SystemExit(f"{watch} got no new pid within {deadline} s after kill -9 {kill}")
        time.sleep(0.0005)


def settle(suite: Suite) -> None:
    """Every store member and cert back (each pid file non-empty), then the budget window passes."""
    end = time.monotonic() + 20
    while not all(suite.pids(c) for c in ("store", "imap", "pop", "http", "cert")):
        if time.monotonic() > end:
            raise SystemExit("the suite did not come back")
        time.sleep(0.01)
    time.sleep(GAP)


def trials(suite: Suite, n: int, polling, cpu) -> tuple[dict, dict]:
    """N kills of each kind without the clients and N with them, interleaved so that the load
    other programs put on the machine falls on both alike. CPU() is the watcher's CPU seconds so
    far; the busy trials add up how much of it the clients cost (with the restarts)."""
    alone: dict = {"cert": [], "store": [], "windows": [], "cpu": 0.0, "secs": 0.0}
    busy: dict = {"cert": [], "store": [], "windows": [], "cpu": 0.0, "secs": 0.0}
    for i in range(2 * n):
        out = busy if i % 2 else alone
        polling.set() if out is busy else polling.clear()
        c0, began = cpu(), time.perf_counter()
        settle(suite)
        out["cert"].append(crash(suite, "cert", "cert")[0])
        settle(suite)
        dt, t0, t1 = crash(suite, "imap", "http")
        out["store"].append(dt)
        out["windows"].append((t0, t1))
        out["cpu"] += cpu() - c0
        out["secs"] += time.perf_counter() - began
    polling.clear()
    return alone, busy


def latencies(samples: list, windows: list[tuple[float, float]]) -> dict:
    def during(s) -> bool:
        return any(s[0] < w1 and s[1] > w0 for w0, w1 in windows)

    out: dict = {}
    for path in PATHS:
        mine = [s for s in samples if s[2] == path]
        out[path] = {
            "during": [(s[1] - s[0]) * 1000 for s in mine if during(s)],
            "outside": [(s[1] - s[0]) * 1000 for s in mine if not during(s)],
            "errors": sum(1 for s in mine if s[3] != 200),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between two requests of one client")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--journal-mb", type=float, default=2.0, help="journal size before the start (2 MB: its bound)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        suite = Suite(Path(tmp) / "root")
        suite.start(args.journal_mb)
        try:
            import psutil

            watcher = psutil.Process(suite.pids("watcher")[0])
            rss_before = watcher.memory_info().rss / 2**20  # listening; the application not loaded yet
            stop, polling, results = mp.Event(), mp.Event(), mp.Queue()
            proc = mp.Process(target=clients_process,
                              args=(suite.port, suite.url, args.clients, args.interval, polling, stop, results))
            proc.start()
            try:
                alone, busy = trials(suite, args.trials, polling, lambda: sum(watcher.cpu_times()[:2]))
            finally:
                stop.set()
                samples = results.get(timeout=60)
                proc.join(10)
            lat = latencies(samples, busy["windows"])
            rss_after = watcher.memory_info().rss / 2**20
        finally:
            suite.stop()

    def ms(v: float) -> str:
        return f"{v * 1000:.1f}"

    rows = [("what", "no clients", f"{args.clients} clients", "ratio")]
    for key, label in (("cert", "kill -9 certd -> new certd pid"), ("store", "kill -9 imapd -> new mshttpd pid")):
        a, b = statistics.median(alone[key]), statistics.median(busy[key])
        rows.append((f"{label}, median ms", ms(a), ms(b), f"{b / a:.2f}"))
        rows.append((f"{label}, p95 ms", ms(pct(alone[key], 95)), ms(pct(busy[key], 95)),
                     f"{pct(busy[key], 95) / pct(alone[key], 95):.2f}"))
    width = max(len(r[0]) for r in rows)
    print(f"crash handling, {args.trials} trials each (restart window {WINDOW} s)")
    for r in rows:
        print(f"  {r[0]:<{width}}  {r[1]:>11}  {r[2]:>11}  {r[3]:>6}")
    print(f"\nconsole latency, {args.clients} clients, one request every {args.interval:g} s each "
          f"(overview, /api/status and /api/timeline in turn; journal {args.journal_mb:g} MB, "
          f"{suite.journal_records} records before the start)")
    print(f"  {'request':<47}  {'n':>5}  {'p50 ms':>7}  {'p99 ms':>7}  {'max ms':>7}  errors")
    for path, name in zip(PATHS, ("overview page", "GET /api/status", "GET /api/timeline"), strict=True):
        for when in ("during", "outside"):
            v = lat[path][when]
            label = f"{name}, {'during a store-group restart' if when == 'during' else 'otherwise'}"
            print(f"  {label:<47}  {len(v):>5}  {pct(v, 50):>7.1f}  {pct(v, 99):>7.1f}  "
                  f"{max(v) if v else float('nan'):>7.1f}  {lat[path]['errors'] if when == 'during' else ''}")
    print(f"\nwatcher RSS: {rss_before:.1f} MB before the console's first use, {rss_after:.1f} MB after")
    served = sum(1 for x in samples if x[3] == 200)  # the clients poll during the busy trials only
    extra = busy["cpu"] / busy["secs"] - alone["cpu"] / alone["secs"]
    print(f"watcher CPU: {alone['cpu'] / alone['secs'] * 100:.1f} % of a core without the clients, "
          f"{busy['cpu'] / busy['secs'] * 100:.1f} % with them "
          f"(~{extra * busy['secs'] / max(served, 1) * 1000:.2f} ms per request served)")
    ratio = statistics.median(busy["cert"]) / statistics.median(alone["cert"])
    print(f"\ngoal: crash -> new pid changes by at most 10 % with the clients: "
          f"{'met' if ratio <= 1.10 else 'NOT met'} ({(ratio - 1) * 100:+.1f} % for certd)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
