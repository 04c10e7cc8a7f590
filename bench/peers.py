"""Issue 14's table against the peers: the shared harness's four tests in one session, and a table.

    python bench/peers.py [--peers msgsrv,s6,runit,supervisord,monit] [--tests crash,hang,storm,overhead]
                          [--trials 20] [--quick] [--by-hand] [--harness ../shared/bench]
                          [--python /tmp/bench-venv/bin/python]

Runs `run.py` of the shared harness (../shared/bench, its README says how to install the peers:
s6, runit and monit from Debian, supervisord from PyPI into the interpreter given by --python) once
per test, msgsrv driven by bench/msgsrv_adapter.py with the console scripts next to this script's
interpreter (the project's venv), the results in a temporary directory; then prints one Markdown
table with every peer's figure and msgsrv's ratio to the peer named in the goal:

    crash     SIGKILL -> new pid, median / p95, and -> greeting again (interleaved trials)   vs s6
    hang      SIGUSR1 hang -> new pid, median / p95 (peers without a health check: N/A)     vs monit
    storm     starts of a service that exits 1 at once, in --duration seconds              budget, FATAL
    overhead  N `sleep` children: start all / idle CPU / supervisor PSS, N = 1, 50, 200     one at a time

--by-hand adds the figures the harness cannot take, each from its own script (same interpreter):
bench/prefork_bench.py (crash -> greeting of a forked imapd, store-group restart, `start-msg` cold
and warm, PSS of the suite), bench/probe_bench.py (CPU of imsched probing every second) and
bench/cli_latency.py (configutil against a bare interpreter).

--quick: 5 trials, storm 15 s, overhead N = 1, 50 and 10 s idle (a smoke run of the whole table).
The machine is shared: compare ratios of one run, never figures of different runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = "msgsrv,s6,runit,supervisord,monit"
TESTS = ("crash", "hang", "storm", "overhead")
GOAL = {"crash": ("s6", {"median": "≤ 1.0× s6", "p95": "≤ 1.2× s6"}), "hang": ("monit", {"median": "≤ 0.8× monit"})}


def harness(args: argparse.Namespace, test: str, results: Path) -> dict:
    """Run one harness test; its JSON result."""
    argv = [args.python, str(args.harness / "run.py"), "--test", test, "--peers", args.peers]
    if test in ("crash", "hang"):
        argv += ["--trials", str(args.trials)]
        if test == "hang":
            argv += ["--settle", "4"]  # monit skips connection tests for 3 s after every start
    elif test == "storm":
        argv += ["--duration", str(args.duration)]
    else:
        argv += ["--n", args.n, "--idle", str(args.idle), "--timeout", "300"]
    env = dict(os.environ, BENCH_ADAPTERS=str(HERE / "msgsrv_adapter.py"), BENCH_RESULTS=str(results),
               MSGSRV_BIN=str(Path(sys.executable).parent))
    before = set(results.glob(f"{test}-*.json"))
    print(f"# {' '.join(argv)}", file=sys.stderr, flush=True)
    r = subprocess.run(argv, env=env, cwd=args.harness, stdout=sys.stderr, check=False)
    new = sorted(set(results.glob(f"{test}-*.json")) - before)
    if r.returncode != 0 or not new:
        raise SystemExit(f"peers: the harness's {test} test failed (exit {r.returncode})")
    return json.loads(new[-1].read_text())


def ms(s: float | None) -> str:
    return "—" if s is None else f"{s * 1000:.1f}"


def by_name(peers: dict) -> dict[str, dict]:
    """'s6:fast' -> 's6' (one variant per peer in this script's runs)."""
    return {label.split(":")[0]: p for label, p in peers.items()}


def ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b else f"{a / b:.2f}×"


def restart_rows(res: dict, names: list[str]) -> list[list[str]]:
    peers = by_name(res["peers"])
    what = "crash (SIGKILL) → new pid" if res["test"] == "crash" else "hang (SIGUSR1) → new pid"
    rows = []
    for key, label in (("pid_s", what), ("greet_s", what.replace("new pid", "greeting again"))):
        for stat in ("median", "p95"):
            cells = []
            for n in names:
                p = peers.get(n)
                if p is None:
                    cells.append("—")
                elif "na" in p:
                    cells.append("N/A")
                else:
                    cells.append(f"{ms(p['summary'][key].get(stat))} ms"
                                 + (f" ({p['summary']['fails']} failed)" if p["summary"]["fails"] else ""))
            goal_peer, goal = GOAL[res["test"]]
            mine = peers.get("msgsrv", {}).get("summary", {}).get(key, {}).get(stat)
            theirs = peers.get(goal_peer, {}).get("summary", {}).get(key, {}).get(stat)
            rows.append([f"{label}, {stat}", *cells, ratio(mine, theirs) + f" {goal_peer}",
                         goal.get(stat, "—") if key == "pid_s" else "—"])
    return rows


def storm_rows(res: dict, names: list[str]) -> list[list[str]]:
    peers = by_name(res["peers"])
    cells = []
    for n in names:
        p = peers.get(n)
        if p is None:
            cells.append("—")
            continue
        last = max(p["offsets_s"]) if p.get("offsets_s") else None
        cells.append(f"{p['starts']} (last at {last:.1f} s)" if last is not None else str(p["starts"]))
    return [[f"storm: starts in {res['duration_s']:.0f} s", *cells, "—", "the budget's starts, then FATAL"]]


def overhead_rows(res: dict, names: list[str]) -> list[list[str]]:
    by: dict[tuple[str, int], list[dict]] = {}
    for row in res["rows"]:
        by.setdefault((row["peer"].split(":")[0], row["n"]), []).append(row)
    rows = []
    for n in sorted({k[1] for k in by}):
        for field, label, fmt in (("start_all_s", "start all", "{:.2f} s"),
                                  ("idle_cpu_pct", "idle CPU", "{:.2f} %"),
                                  ("pss_mib", "supervisor PSS", "{:.1f} MiB")):
            cells = []
            for name in names:
                got = [r[field] for r in by.get((name, n), []) if r.get(field) is not None]
                cells.append(fmt.format(statistics.median(got)) if got else "—")
            rows.append([f"overhead N = {n}: {label}", *cells, "—", "—"])
    return rows


def table(names: list[str], rows: list[list[str]]) -> str:
    head = ["what", *names, "msgsrv ÷", "goal"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", default=PEERS, help=f"comma-separated (default {PEERS})")
    ap.add_argument("--tests", default=",".join(TESTS))
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30.0, help="storm: seconds")
    ap.add_argument("--n", default="1,50,200", help="overhead: numbers of children")
    ap.add_argument("--idle", type=float, default=20.0, help="overhead: idle window, seconds")
    ap.add_argument("--quick", action="store_true", help="5 trials, storm 15 s, N = 1,50, idle 10 s")
    ap.add_argument("--by-hand", action="store_true", help="also run prefork_bench, probe_bench, cli_latency")
    ap.add_argument("--harness", type=Path, default=HERE.parent.parent / "shared" / "bench")
    ap.add_argument("--python", default="/tmp/bench-venv/bin/python",
                    help="the interpreter that runs the harness (supervisord installed in it)")
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.duration, args.n, args.idle = 5, 15.0, "1,50", 10.0
    tests = [t for t in args.tests.split(",") if t]
    if bad := [t for t in tests if t not in TESTS]:
        ap.error(f"unknown test {bad[0]!r} (one of: {', '.join(TESTS)})")
    if not (args.harness / "run.py").is_file():
        ap.error(f"no harness at {args.harness} (give --harness)")
    if not Path(args.python).is_file():
        ap.error(f"no interpreter {args.python} (make it as ../shared/bench/README.md says, or give --python)")
    names = [p.split(":")[0] for p in args.peers.split(",") if p]
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="msgsrv-peers-") as tmp:
        for test in tests:
            res = harness(args, test, Path(tmp))
            rows += {"crash": restart_rows, "hang": restart_rows, "storm": storm_rows,
                     "overhead": overhead_rows}[test](res, names)
    print(table(names, rows), flush=True)
    if args.by_hand:
        for script, extra in (("prefork_bench.py", []), ("probe_bench.py", []), ("cli_latency.py", [])):
            print(f"\n## {script}\n", flush=True)
            subprocess.run([sys.executable, str(HERE / script), *extra], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
