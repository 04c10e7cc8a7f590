"""Watcher figures on the whole built-in suite: RSS, idle CPU, store-group restart time.

    python bench/watcher_bench.py [--idle 10] [--rounds 5]

Starts every component (pop with 4 workers) in a temporary MSGSRV_BASE on free ports, then
prints a table. Goals (issue 5): watcher RSS <= 35 MB; idle CPU of watcher + servers < 0.1 % of a
core; the seed's store-group restart (kill -9 imapd -> http answering again) < 1 s.
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
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import free_ports, wait_for  # noqa: E402

BIN = Path(sys.executable).parent
PARAMS = ("local.watcher.port", "local.watcher.httpport", "local.store.port", "service.imap.port", "service.pop.port", "service.http.port",
          "service.smtp.port", "service.lmtp.port", "local.ens.port", "local.job_controller.port",
          "local.cert.port", "local.sched.port", "service.imap.sslport", "service.pop.sslport",
          "service.http.sslport", "service.smtp.sslport")


def pids(base: Path, c: str) -> list[int]:
    try:
        return [d["pid"] for d in json.loads((base / "data/run" / f"{c}.pid").read_text())]
    except (OSError, ValueError):
        return []


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            return s.recv(20).startswith(b"HTTP/1.")
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp()) / "root"
    env = dict(os.environ, MSGSRV_BASE=str(base))
    ports = dict(zip(PARAMS, free_ports(len(PARAMS))))
    settings = {**{k: str(v) for k, v in ports.items()}, "local.autorestart": "yes",
                "service.pop.numprocesses": "4",
                # a 1 s restart window so that repeated rounds are never held back by the budget
                # (the cross-field rule then wants msprobe scheduling off)
                "local.autorestart.timeout": "1", "local.schedule.msprobe.enable": "no"}
    base.mkdir(parents=True)
    (base / "s.txt").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    subprocess.run([BIN / "configutil", "-i", base / "s.txt"], env=env, check=True)
    t0 = time.monotonic()
    subprocess.run([BIN / "start-msg"], env=env, check=True, stdout=subprocess.DEVNULL)
    up = time.monotonic() - t0
    try:
        watcher = psutil.Process(pids(base, "watcher")[0])
        servers = [psutil.Process(p) for c in ("ens", "store", "imap", "pop", "cert", "http", "sched",
                                               "dispatcher", "job_controller") for p in pids(base, c)]
        time.sleep(1.0)
        procs = [watcher, *servers]
        cpu0 = sum(sum(p.cpu_times()[:2]) for p in procs)
        w0 = sum(watcher.cpu_times()[:2])
        time.sleep(args.idle)
        cpu = (sum(sum(p.cpu_times()[:2]) for p in procs) - cpu0) / args.idle * 100
        wcpu = (sum(watcher.cpu_times()[:2]) - w0) / args.idle * 100
        rss = watcher.memory_info().rss / 2**20
        rss_servers = [p.memory_info().rss / 2**20 for p in servers]
        restarts = []
        log = base / "data/log/watcher"
        for _ in range(args.rounds):
            n = log.read_text().count("Starting http server")
            imap = pids(base, "imap")[0]
            t = time.monotonic()
            os.kill(imap, signal.SIGKILL)
            wait_for(lambda n=n: log.read_text().count("Starting http server") > n
                     and answers(ports["service.http.port"]), timeout=30, every=0.002)
            restarts.append((time.monotonic() - t) * 1000)
            time.sleep(1.2)
    finally:
        subprocess.run([BIN / "stop-msg", "-f"], env=env, stdout=subprocess.DEVNULL)
    rows = [
        ("suite up (start-msg, 9 components, 12 servers)", f"{up * 1000:.0f} ms", "-"),
        ("watcher RSS", f"{rss:.1f} MB", "<= 35 MB"),
        ("server RSS (min / max)", f"{min(rss_servers):.1f} / {max(rss_servers):.1f} MB", "<= 30 MB"),
        (f"idle CPU, watcher + {len(servers)} servers ({args.idle:.0f} s)", f"{cpu:.3f} % of a core", "< 0.1 %"),
        ("idle CPU, watcher alone", f"{wcpu:.3f} % of a core", "-"),
        (f"store-group restart, kill -9 imapd -> http answers (median of {args.rounds})",
         f"{statistics.median(restarts):.0f} ms (min {min(restarts):.0f}, max {max(restarts):.0f})", "< 1000 ms"),
    ]
    print_table(rows)
    return 0


def print_table(rows: list[tuple[str, str, str]]) -> None:
    """(what, figure, goal) rows as a Markdown table (the README's Performance section)."""
    w = max(len(r[0]) for r in rows)
    print(f"| {'what'.ljust(w)} | figure | goal |\n|{'-' * (w + 2)}|---|---|")
    for r in rows:
        print(f"| {r[0].ljust(w)} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    sys.exit(main())
