"""start-msg: bring every enabled component up in order, launching the watcher first."""

from __future__ import annotations

import os
import sys

from msgsrv.cli.main import run

PROG = "start-msg"
COMPLETE = "_START_MSG_COMPLETE"  # click's shell-completion variable for PROG
HELP = """Start all or some msgsrv components.

    \b
    Components, in start order: ens store imap pop cert http sched dispatcher
    job_controller mmp (smtp and lmtp name the dispatcher; mta = dispatcher +
    job_controller). No component: every enabled one. `start-msg ha` starts
    everything in HA mode: when the restart limit is reached the watcher stops
    everything and exits, so the cluster manager fails over.
    """


def command():
    """The click command (click imported only here: plain `start-msg` does without, see main)."""
    import click

    @click.command(context_settings={"help_option_names": ["-h", "--help"]}, help=HELP)
    @click.argument("components", nargs=-1, metavar="[ha | COMPONENT...]")
    def cli(components):
        return start(components)

    return cli


def __getattr__(name: str):
    if name == "cli":
        return command()
    raise AttributeError(name)


def start(components: tuple[str, ...]) -> int:
    from msgsrv import messages as M
    from msgsrv.cli.console import progress
    from msgsrv.control.client import WatcherClient, WatcherNotAnswering, WatcherUnavailable, running_watcher
    from msgsrv.errors import UsageError
    from msgsrv.paths import ServerRoot

    args = list(components)
    ha = bool(args) and args[0] == "ha"
    if ha:
        args = args[1:]
    names: list[str] = []  # none: every enabled component (the watcher's to find)
    if args:  # the component table (dataclasses, ~5 ms) only when names are given
        from msgsrv.cli.supervise_here import resolve_names

        names = [n for n in resolve_names(args, PROG) if n != "watcher"]
    root = ServerRoot.from_env().ensure()
    if running_watcher(root) is None and not _watcher_enabled(root):
        if ha:
            raise UsageError(M.HA_NEEDS_WATCHER)
        from msgsrv.cli.supervise_here import start_without_watcher

        sys.stderr.write(f"{PROG}: {M.WATCHER_DISABLED}\n")
        return start_without_watcher(root, names)

    from msgsrv.control.launch import launch_watcher

    progress("L", M.CONNECTING)
    try:
        client = WatcherClient.connect(root)
    except WatcherNotAnswering:
        raise
    except WatcherUnavailable:
        progress("T", M.LAUNCHING)
        try:
            pid, client = launch_watcher(root, ha, sys.stderr.isatty())
        except Exception:
            progress("L", " failed")
            raise
        progress("L", f" {pid}")
    with client:
        if components != ("watcher",):
            from msgsrv.cli import console

            console.handed_over = "start"
            client.request("START", *(["ha"] if ha else []), *names, on_progress=progress)
    from msgsrv.console import link
    from msgsrv.control.client import read_settings

    settings = read_settings(root)  # a file that does not parse: the watcher's last good one may serve it
    url = link.awaited(root, settings is None or settings.get_int("local.watcher.httpport", 49995) != 0)
    if url:
        progress("L", link.LINE.format(url=url))  # as Jupyter does: the console, logged in
    return 0


def _watcher_enabled(root) -> bool:
    """local.watcher.enable; a config file that does not parse counts as yes (the watcher then
    refuses to start with the parse error, or keeps its last good configuration)."""
    from msgsrv.control.client import read_settings

    store = read_settings(root)
    return store is None or store.get_bool("local.watcher.enable")


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv) == [] and COMPLETE not in os.environ:
        # plain `start-msg`, the usual cold start: no option or argument for click to parse, and
        # click costs ~25 ms before the watcher is launched (errors: the same lines as run's); not
        # when the shell asks click for completion (_START_MSG_COMPLETE, with no argument either)
        from msgsrv.cli.main import failed, said_lost_output, sane_stdio

        sane_stdio()
        try:
            rc = start(())
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - as run(): one line, no traceback
            return failed(PROG, e)
        said_lost_output(PROG)
        return rc
    return run(command(), PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
