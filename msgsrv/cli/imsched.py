"""imsched: run the scheduler daemon in the foreground, or list the schedule."""

from __future__ import annotations

import sys

import click

PROG = "imsched"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-l", "--list", "listing", is_flag=True, help="Print each scheduled task and its next run time, then exit.")
@click.option("-p", "--port", type=click.IntRange(1, 65535), default=None,
              help="Health port to listen on (default: local.sched.port).")
def command(listing: bool, port: int | None) -> int:
    """Run every local.schedule.<task> entry at its time: 5 crontab fields (day of month AND day
    of week must both match when both are given) or a number of seconds, then the command.

    Each run and its exit status go to the default log. The suite's own msprobe making a plain
    pass runs in-process (no process per pass). A change of config/msg.toml is noticed within a
    second; SIGHUP (refresh sched) reloads at once; SIGTERM stops the scheduler. The health port
    answers a greeting line and PING, for msprobe.
    """
    from msgsrv.paths import ServerRoot

    root = ServerRoot.from_env()
    if listing:
        return _list(root)
    import asyncio

    from msgsrv.sched.imsched import serve

    return asyncio.run(serve(root, port))


def _list(root) -> int:
    from datetime import datetime

    from msgsrv.config.store import ConfigStore
    from msgsrv.sched.imsched import load_tasks, next_time

    tasks, problems = load_tasks(ConfigStore(root.config_file).overrides())
    now = datetime.now().astimezone()
    for t in tasks:
        click.echo(f"{t.name}\t{next_time(t.schedule, now).strftime('%Y-%m-%d %H:%M:%S %z')}\t{t.schedule.text}")
    for p in problems:
        click.echo(f"{PROG}: ignoring schedule {p}", err=True)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    from msgsrv.cli.main import run

    return run(command, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
