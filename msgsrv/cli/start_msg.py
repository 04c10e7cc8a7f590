"""start-msg: bring every enabled component up in order, launching the watcher first."""

from __future__ import annotations

import sys

import click

from msgsrv.cli.main import run

PROG = "start-msg"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("components", nargs=-1, metavar="[ha | COMPONENT...]")
def cli(components):
    """Start all or some msgsrv components.

    \b
    Components, in start order: ens store imap pop cert http sched dispatcher
    job_controller mmp (smtp and lmtp name the dispatcher; mta = dispatcher +
    job_controller). No component: every enabled one. `start-msg ha` starts
    everything in HA mode: when the restart limit is reached the watcher stops
    everything and exits, so the cluster manager fails over.
    """
    from msgsrv import messages as M
    from msgsrv.cli.console import progress
    from msgsrv.cli.supervise_here import resolve_names
    from msgsrv.config.store import ConfigStore
    from msgsrv.paths import ServerRoot

    args = list(components)
    ha = bool(args) and args[0] == "ha"
    if ha:
        args = args[1:]
    names = resolve_names(args, PROG)
    names = [n for n in names if n != "watcher"]
    root = ServerRoot.from_env().ensure()
    cfg = ConfigStore(root.config_file)
    if not cfg.get_bool("local.watcher.enable"):
        from msgsrv.cli.supervise_here import start_without_watcher

        return start_without_watcher(root, names)

    from msgsrv.control.client import WatcherClient, WatcherUnavailable
    from msgsrv.control.launch import launch_watcher

    progress("L", M.CONNECTING)
    try:
        client = WatcherClient.connect(root)
    except WatcherUnavailable:
        progress("T", M.LAUNCHING)
        pid, client = launch_watcher(root, ha, sys.stderr.isatty())
        progress("L", f" {pid}")
    with client:
        if components != ("watcher",):
            client.request("START", *(["ha"] if ha else []), *names, on_progress=progress)
    from msgsrv.console import link

    url = link.awaited(root, cfg.get_int("local.watcher.httpport", 49995) != 0)
    if url:
        progress("L", link.LINE.format(url=url))  # as Jupyter does: the console, logged in
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(cli, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
