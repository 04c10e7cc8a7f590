"""Start-up latency of `configutil -o NAME` against a bare interpreter (issue 3, "Speed").

    /work/venv/bin/python bench/cli_latency.py [--runs 20]

Runs `python -c pass` and `configutil -o local.defdomain` (on a populated store in a temporary
MSGSRV_BASE) alternately, RUNS times each, with the interpreter running this script and the
console script installed next to it, and prints both medians and their ratio. Goal: ratio <= 3.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 3.0
SETTINGS = """\
local.defdomain = example.org
local.autorestart = yes
local.autorestart.timeout = 900
local.schedule.msprobe = "*/5 * * * * lib/msprobe"
local.probe.warningthreshold = 4
local.probe.imap.timeout = 8
local.probe.pop.timeout = 8
local.probe.http.warningthreshold = 3
local.queuedir = /var/spool/msgsrv
service.readtimeout = 12
service.imap.port = 1143
service.pop.port = 1110
service.http.port = 8080
service.imap.numprocesses = 4
local.mmp.enable = yes
alarm.msgalarmnoticercpt = ops@example.org
alarm.diskavail.msgalarmthreshold = 15
"""


def configutil_path() -> str:
    script = Path(sys.executable).parent / "configutil"
    if not script.exists():
        sys.exit(f"cli_latency: no console script at {script} (pip install -e . into this interpreter's venv)")
    return str(script)


def timed(argv: list[str], env: dict[str, str], expect: str) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0 or out.stdout != expect:
        sys.exit(f"cli_latency: {argv} gave exit {out.returncode}, stdout {out.stdout!r}, stderr {out.stderr!r}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="runs of each command (default 20)")
    runs = ap.parse_args().runs
    configutil = configutil_path()
    with tempfile.TemporaryDirectory(prefix="msgsrv-bench-") as tmp:
        env = dict(os.environ, MSGSRV_BASE=tmp)
        settings = Path(tmp) / "settings.txt"
        settings.write_text(SETTINGS)
        subprocess.run([configutil, "-i", str(settings)], env=env, check=True)
        bare_cmd = [sys.executable, "-c", "pass"]
        get_cmd = [configutil, "-o", "local.defdomain"]
        timed(bare_cmd, env, "")  # warm the page cache for both
        timed(get_cmd, env, "example.org\n")
        bare, get = [], []
        for _ in range(runs):
            bare.append(timed(bare_cmd, env, ""))
            get.append(timed(get_cmd, env, "example.org\n"))
    mb, mg = statistics.median(bare), statistics.median(get)
    ratio = mg / mb
    print(f"{'command':<36} {'median':>10}")
    print(f"{'python -c pass':<36} {mb * 1000:>7.1f} ms")
    print(f"{'configutil -o local.defdomain':<36} {mg * 1000:>7.1f} ms")
    label = f"ratio (goal <= {GOAL:g})"
    print(f"{label:<36} {ratio:>8.2f}x")
    print(f"({runs} runs each, alternating; {sys.executable})")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
