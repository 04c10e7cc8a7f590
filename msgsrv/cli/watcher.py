"""watcher: the supervision daemon (foreground), `watcher status` and `watcher reserve-port`."""

from __future__ import annotations

import sys
import time

import click

from msgsrv.cli.main import run

PROG = "watcher"
STATUS_DOWN = 3  # LSB: at least one enabled component does not run


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ha", is_flag=True, help="HA mode: when the restart limit is reached, stop everything and exit 1.")
@click.pass_context
def cli(ctx, ha):
    """The watcher daemon: parent of every server; restarts crashed ones (local.autorestart).

    Without a subcommand it runs in the foreground (start-msg launches it for you).
    """
    if ctx.invoked_subcommand is None:
        return _run(ha)


def _run(ha: bool) -> int:
    import asyncio

    from msgsrv.paths import ServerRoot
    from msgsrv.watcher.daemon import run as run_daemon

    return asyncio.run(run_daemon(ServerRoot.from_env(), ha=ha))


@cli.command("run")
@click.option("--ha", is_flag=True, help="HA mode (see above).")
def run_cmd(ha):
    """Run the daemon in the foreground."""
    return _run(ha)


STATE_STYLE = {"RUNNING": "green", "FATAL": "bold red", "EXITED": "red", "BACKOFF": "yellow", "STARTING": "cyan",
               "STOPPING": "cyan", "STOPPED": "dim"}


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(as_json):
    """Show the supervised tree: components, state, pids, uptime, restarts in the window, last exit.

    Exit 0 when every enabled component is RUNNING, 3 when any is not, 1 when the watcher cannot be
    asked (not running, not answering).
    """
    import json

    from msgsrv import messages as M
    from msgsrv.control.client import WatcherClient, WatcherUnavailable, running_watcher
    from msgsrv.daemons import running_components
    from msgsrv.errors import OperationFailed
    from msgsrv.paths import ServerRoot

    root = ServerRoot.from_env()
    if running_watcher(root) is None and not _enabled(root):
        return _disabled(root, as_json)
    try:
        client = WatcherClient.connect(root)
    except WatcherUnavailable:
        unsupervised = running_components(root) if running_watcher(root) is None else []
        if unsupervised:  # not only "not running": what runs without it is said too
            raise OperationFailed(M.UNSUPERVISED.format(names=" ".join(unsupervised))) from None
        raise
    with client:
        st = json.loads(client.request("STATUS", "pss") if as_json else client.request("STATUS"))
    from msgsrv.watcher.status import serving

    code = 0 if all(serving(c) for c in st["components"] if c.get("enabled")) else STATUS_DOWN
    if as_json:
        st["exit_status"] = code
        click.echo(json.dumps(st, indent=2))
        return code
    w = st["watcher"]
    title = (f"watcher {w['pid']}  autorestart={'yes' if w['autorestart'] else 'no'}  "
             f"window={_n(w['window'])}s{'  HA' if w['ha'] else ''}")
    if w.get("config_error"):
        title += "  config: does not parse (last good in force)"
    _table(title, [c for c in st["components"] if _shown(c)])
    return code


def _shown(c: dict) -> bool:
    """Every enabled component, and any other that runs, is wanted or has failed: never dropped."""
    return c.get("enabled") or c.get("wanted") or c["state"] != "STOPPED" or bool(c["pids"]) \
        or bool(c.get("last_exit"))


def _table(title: str, comps: list[dict]) -> None:
    from msgsrv.cli.console import print_table
    from msgsrv.watcher.status import frozen_tag

    rows = []
    for c in comps:
        pids = " ".join(str(p) for p in c["pids"]) or "-"
        up = _uptime(c["uptime"]) if c.get("uptime") is not None else "-"
        tag = frozen_tag(c)
        state = f"{c['state']} ({tag})" if tag else c["state"]
        rows.append([c["name"], c["daemon"], state, pids, up, str(c.get("restarts", 0)), _last(c.get("last_exit"))])
    tty = sys.stdout.isatty()
    if not tty:
        click.echo(title)
    print_table(title if tty else None,
                ["COMPONENT", "PROCESS", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"], rows,
                {r[0]: "yellow" if r[2].endswith("frozen)") else STATE_STYLE.get(r[2]) for r in rows})
    for c in comps:
        for f in c.get("frozen") or ():
            click.echo(f"{c['name']}: {f['why']}")


def _last(e: dict | None) -> str:
    if not e:
        return "-"
    when = time.strftime("%H:%M:%S", time.localtime(e["time"])) if e.get("time") else "?"
    return f"{e.get('how') or 'status unknown'} at {when}"


def _enabled(root) -> bool:
    from msgsrv.control.client import read_settings

    store = read_settings(root)
    return store is None or store.get_bool("local.watcher.enable")


def _oldest(records: list[dict]) -> float:
    """The age of the oldest of the live RECORDS, on the clock since boot (no step of the wall
    clock moves it); the recorded wall-clock start where /proc cannot tell."""
    from msgsrv import procinfo

    booted = procinfo.system_uptime()
    ages = [a for r in records if (a := procinfo.age(r["pid"], booted)) is not None]
    return round(max(ages) if ages else time.time() - min(r.get("started") or time.time() for r in records), 1)


def _disabled(root, as_json: bool) -> int:
    """local.watcher.enable no: say so, and show what the pid files say runs."""
    import json

    from msgsrv import messages as M
    from msgsrv.components import BY_NAME, START_ORDER
    from msgsrv.control.client import read_settings
    from msgsrv.procinfo import recorded
    from msgsrv.watcher.statefile import pid_records

    store = read_settings(root)
    comps = []
    for c in START_ORDER:
        live = [r for r in pid_records(root.pid_file(c)) if recorded(r)]
        comps.append({"name": c, "daemon": BY_NAME[c].daemon, "state": "RUNNING" if live else "STOPPED",
                      "pids": [r["pid"] for r in live],
                      "uptime": _oldest(live) if live else None,
                      "enabled": bool(store and store.get_bool(BY_NAME[c].enable)), "last_exit": None})
    code = 0 if all(c["state"] == "RUNNING" for c in comps if c["enabled"]) else STATUS_DOWN
    if as_json:
        click.echo(json.dumps({"watcher": None, "disabled": True, "components": comps, "exit_status": code},
                              indent=2))
        return code
    sys.stderr.write(f"{PROG}: {M.STATUS_DISABLED}\n")
    _table("watcher disabled (servers run unsupervised)", [c for c in comps if _shown(c)])
    return code


@cli.command("reserve-port")
@click.option("--dry-run", is_flag=True, help="Print the value that would be written, change nothing.")
def reserve_port_cmd(dry_run):
    """Add the watcher's ports to net.ipv4.ip_local_reserved_ports (root only).

    The default control port 49994 lies in Linux's ephemeral port range; reserving it keeps
    outgoing connections from taking it. The systemd unit and the OCF agent run this first.
    Exit 0 when the ports are reserved (or with --dry-run), 1 when the sysctl cannot be written.
    """
    from msgsrv.control.client import read_settings
    from msgsrv.errors import OperationFailed
    from msgsrv.paths import ServerRoot
    from msgsrv.watcher import portreserve

    store = read_settings(ServerRoot.from_env())
    ports = [store.get_int("local.watcher.port", 49994) if store else 49994]
    metrics = store.get_int("local.watcher.metricsport", 0) if store else 0
    if 0 < metrics < 65536:
        ports.append(metrics)
    value, what = portreserve.reserve(ports, dry_run=dry_run)
    if what.startswith("unable"):
        raise OperationFailed(what)
    click.echo(what)
    return 0


def _n(x: float) -> str:
    return str(int(x)) if float(x) == int(x) else f"{x:g}"


def _uptime(s: float) -> str:
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def main(argv: list[str] | None = None) -> int:
    return run(cli, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
