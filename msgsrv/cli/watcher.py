"""watcher: the supervision daemon (foreground) and `watcher status`."""

from __future__ import annotations

import sys

import click

from msgsrv.cli.main import run

PROG = "watcher"


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


STATE_STYLE = {"RUNNING": "green", "FATAL": "bold red", "BACKOFF": "yellow", "STARTING": "cyan",
               "STOPPING": "cyan", "STOPPED": "dim"}


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(as_json):
    """Show the supervised tree: components, pids, state, uptime, restarts in the window.

    Exit 0 when the watcher answers, 1 when it is not running.
    """
    import json

    from msgsrv.cli.console import print_table
    from msgsrv.control.client import WatcherClient
    from msgsrv.paths import ServerRoot

    with WatcherClient.connect(ServerRoot.from_env()) as client:
        st = json.loads(client.request("STATUS"))
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return 0
    w = st["watcher"]
    rows = []
    for c in st["components"]:
        if c["state"] == "STOPPED" and not c["pids"]:
            continue
        pids = " ".join(str(p) for p in c["pids"]) or "-"
        up = _uptime(c["uptime"]) if c["uptime"] is not None else "-"
        rows.append([c["name"], c["daemon"], c["state"], pids, up, str(c["restarts"])])
    title = (f"watcher {w['pid']}  autorestart={'yes' if w['autorestart'] else 'no'}  "
             f"window={int(w['window'])}s{'  HA' if w['ha'] else ''}")
    tty = sys.stdout.isatty()
    if not tty:
        click.echo(title)
    print_table(title if tty else None,
                ["COMPONENT", "PROCESS", "STATE", "PID", "UPTIME", "RESTARTS"], rows,
                {r[0]: STATE_STYLE.get(r[2]) for r in rows})
    return 0


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
