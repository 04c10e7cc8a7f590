"""The hang figure of issue 10: SIGSTOP imapd, then msprobe with local.probe.imap.timeout 1.

    python bench/hang_bench.py [--rounds 5]

Starts the built-in store group (pop with 4 workers) in a temporary MSGSRV_BASE on free ports with
local.autorestart yes. Each round SIGSTOPs the running imapd, starts `msprobe imap` and measures
(from msprobe's start): when msprobe exits (goal < 1.5 s, exit status 1) and when a new imapd greets
`* OK` on the IMAP port (goal < 2.5 s). Also from the watcher's journal: hang report -> new imapd
started. Prints a table (the machine is shared: compare figures within one run).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from watcher_bench import free_ports, pids, print_table  # the same directory: bench/

BIN = Path(sys.executable).parent
PARAMS = ("local.watcher.port", "local.store.port", "service.imap.port", "service.pop.port", "service.http.port")


def greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.settimeout(0.2)
            return s.recv(4) == b"* OK"
    except OSError:
        return False


def journal(base: Path) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from msgsrv.watcher.journal import read

    return read(base / "data/run")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp()) / "root"
    env = dict(os.environ, MSGSRV_BASE=str(base))
    ports = dict(zip(PARAMS, free_ports(len(PARAMS))))
    settings = {**{k: str(v) for k, v in ports.items()}, "local.autorestart": "yes", "service.pop.numprocesses": "4",
                "local.probe.imap.timeout": "1", "local.autorestart.timeout": "1",
                "local.schedule.msprobe.enable": "no", "local.ens.enable": "no", "local.cert.enable": "no",
                "local.sched.enable": "no", "local.imta.enable": "no"}
    base.mkdir(parents=True)
    (base / "s.txt").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    subprocess.run([BIN / "configutil", "-i", base / "s.txt"], env=env, check=True)
    subprocess.run([BIN / "start-msg"], env=env, check=True, stdout=subprocess.DEVNULL)
    exits, greets_at, inside, codes = [], [], [], []
    try:
        for _ in range(args.rounds):
            imap = pids(base, "imap")[0]
            os.kill(imap, signal.SIGSTOP)
            t0 = time.monotonic()
            probe = subprocess.Popen([BIN / "msprobe", "imap"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            exit_at = greet_at = None
            while exit_at is None or greet_at is None:
                if exit_at is None and probe.poll() is not None:
                    exit_at = time.monotonic() - t0
                    codes.append(probe.returncode)
                if greet_at is None and (p := pids(base, "imap")) and p[0] != imap and greets(ports["service.imap.port"]):
                    greet_at = time.monotonic() - t0
                if time.monotonic() - t0 > 30:
                    raise SystemExit("no new imapd within 30 s")
                time.sleep(0.005)
            exits.append(exit_at * 1000)
            greets_at.append(greet_at * 1000)
            recs = journal(base)  # none from a watcher without a journal (0.1.0): no inside figure
            hangs = [r for r in recs if r["kind"] == "hang" and r["component"] == "imap"]
            started = [r for r in recs if r["kind"] == "started" and r["component"] == "imap"
                       and hangs and r["t"] > hangs[-1]["t"]]
            if started:
                inside.append((started[0]["t"] - hangs[-1]["t"]) * 1000)
            time.sleep(1.2)  # let the 1 s restart window pass
    finally:
        subprocess.run([BIN / "stop-msg", "-f"], env=env, stdout=subprocess.DEVNULL)

    def fig(xs):
        return f"{statistics.median(xs):.0f} ms (min {min(xs):.0f}, max {max(xs):.0f})" if xs else "-"

    rows = [
        (f"SIGSTOP imapd -> msprobe imap exits (median of {args.rounds}; exit statuses {sorted(set(codes))})",
         fig(exits), "< 1500 ms, status 1"),
        ("SIGSTOP imapd -> a new imapd greets * OK (from msprobe's start)", fig(greets_at), "< 2500 ms"),
        ("in the watcher: hang report -> new imapd started (SIGTERM, SIGCONT, restart)", fig(inside), "-"),
    ]
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
