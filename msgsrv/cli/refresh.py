"""refresh: make the running daemons reread their configuration now (SIGHUP), as the original's
`refresh [component]`. Thin: parse, call daemons.refresh, print one line per daemon."""

from __future__ import annotations

import sys

import click

PROG = "refresh"
TARGETS = {"watcher": ("watcher",), "sched": ("sched",), "all": ("watcher", "sched")}
LABEL = {"watcher": "watcher", "sched": "sched server"}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("which", required=False, default="all", type=click.Choice(sorted(TARGETS)),
                metavar="[sched|watcher|all]")
def command(which: str) -> int:
    """Make the watcher and imsched (the sched server) reread config/msg.toml now.

    The daemons are found through their pid files in data/run/ and sent SIGHUP. imsched also
    notices a change of the file by itself within a second; the other servers read their
    configuration when they start. Without an argument, every running daemon is refreshed.
    Exit status: 0 refreshed, 1 a named daemon (with all: every daemon) is not running or could
    not be signalled, 2 usage error.
    """
    from msgsrv.daemons import refresh
    from msgsrv.errors import OperationFailed
    from msgsrv.paths import ServerRoot

    rows = refresh(ServerRoot.from_env(), TARGETS[which])
    done = [(n, pid) for n, pid, problem in rows if not problem]
    for name, pid in done:
        click.echo(f"Refreshing {LABEL[name]} {pid}")
    failed = [(n, pid, problem) for n, pid, problem in rows if problem and (which != "all" or problem != "not running")]
    if which == "all" and not done and not failed:
        raise OperationFailed("neither the watcher nor the sched server is running")
    for name, pid, problem in failed:
        who = f"{LABEL[name]} {pid}" if pid else LABEL[name]
        click.echo(f"{PROG}: {who} is not running" if problem == "not running"
                   else f"{PROG}: unable to refresh {who}: {problem}", err=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    from msgsrv.cli.main import run

    return run(command, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
