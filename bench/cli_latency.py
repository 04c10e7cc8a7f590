"""Start-up cost of configutil against a bare interpreter (issues 3 and 14): prints a table.

    .venv/bin/python bench/cli_latency.py [--runs 20]

Runs, alternately and RUNS times each, with the interpreter running this script (a venv's, so
`python -c pass` pays the same site start-up as the console script) and the configutil console
script installed next to it, in a temporary MSGSRV_BASE holding a populated store:

    python -c pass                       the baseline
    configutil -o NAME                   the fast get (derived cache)
    configutil -o NAME -v VALUE          the fast set (line edit, config/quickedit.py)
    configutil -o NAME -v VALUE, full    the same set on a store the line edit leaves to tomlkit
                                         (a hand-written [table]): click + tomlkit
    configutil -p local.                 a listing (always the full path)

For each: median CPU time (user + system of the child, from wait4's rusage) and median wall
time, and their ratio to the baseline. Goals: get and set <= 3x the baseline in CPU time.
Timings on a shared machine are noisy; compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
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


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(cpu seconds, wall seconds) of one run; exits on a failure."""
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"cli_latency: {argv} exited with wait status {status}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="runs of each command (default 20)")
    runs = ap.parse_args().runs
    configutil = configutil_path()
    with tempfile.TemporaryDirectory(prefix="msgsrv-bench-") as tmp:
        env = dict(os.environ, MSGSRV_BASE=tmp)
        env.pop("MSGSRV_DEBUG", None)
        settings = Path(tmp) / "settings.txt"
        settings.write_text(SETTINGS)
        run([configutil, "-i", str(settings)], env)
        table = Path(tmp) / "table.toml"  # the line edit leaves a [table] to tomlkit
        table.write_text('"local.defdomain" = "example.org"\n\n[service]\n"imap.port" = 1143\n')
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("configutil -o NAME", [configutil, "-o", "local.defdomain"]),
            ("configutil -o NAME -v VALUE", [configutil, "-o", "local.defdomain", "-v", "example.net"]),
            ("configutil -o NAME -v VALUE, full path", [configutil, "-f", str(table), "-o", "local.defdomain",
                                                        "-v", "example.net"]),
            ("configutil -p local.", [configutil, "-p", "local."]),
        ]
        for _, argv in cases:  # warm the page cache and the derived cache
            run(argv, env)
        cpu: dict[str, list[float]] = {name: [] for name, _ in cases}
        wall: dict[str, list[float]] = {name: [] for name, _ in cases}
        for _ in range(runs):
            for name, argv in cases:
                c, w = run(argv, env)
                cpu[name].append(c)
                wall[name].append(w)
    base_cpu = statistics.median(cpu[cases[0][0]])
    base_wall = statistics.median(wall[cases[0][0]])
    print(f"{'command':<40} {'cpu':>9} {'ratio':>7} {'wall':>9} {'ratio':>7}  goal")
    worst = 0.0
    for name, _ in cases:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        goal = f"<= {GOAL:g}x" if name in ("configutil -o NAME", "configutil -o NAME -v VALUE") else "-"
        if goal != "-":
            worst = max(worst, c / base_cpu)
        print(f"{name:<40} {c * 1000:>6.1f} ms {c / base_cpu:>6.2f}x {w * 1000:>6.1f} ms {w / base_wall:>6.2f}x  {goal}")
    print(f"({runs} runs each, interleaved; medians; {sys.executable})")
    return 0 if worst <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
