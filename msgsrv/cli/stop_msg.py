"""stop-msg: stop all or some components in reverse start order, the watcher last."""

from __future__ import annotations

import sys

import click

from msgsrv.cli.main import run

PROG = "stop-msg"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "force", is_flag=True, help="Force: stop with SIGKILL; a watcher that does not answer is "
                                                "killed and everything is stopped by pid.")
@click.argument("components", nargs=-1, metavar="[ha | COMPONENT...]")
def cli(force, components):
    """Stop all or some msgsrv components.

    With no component, stops everything that is running (disabled components
    included) and then the watcher. `stop-msg ha` does the same.
    """
    from msgsrv import messages as M
    from msgsrv.cli.console import progress
    from msgsrv.cli.supervise_here import kill_watcher, resolve_names, stop_without_watcher
    from msgsrv.control.client import WatcherClient, WatcherNotAnswering, WatcherUnavailable
    from msgsrv.errors import OperationFailed
    from msgsrv.paths import ServerRoot

    args = [a for a in components if a != "ha"]
    names = resolve_names(args, PROG)
    root = ServerRoot.from_env()
    if not root.base.exists():
        return 0
    try:
        client = WatcherClient.connect(root)
    except WatcherNotAnswering as e:
        if not force:
            raise OperationFailed(f"{e} (stop-msg -f stops everything by pid)") from None
        progress("T", f"Stopping watcher {e.pid} (not answering) ")
        kill_watcher(root)
        progress("L", "... done")
        return stop_without_watcher(root, names, force)
    except WatcherUnavailable:
        return stop_without_watcher(root, names, force)
    from msgsrv.cli import console

    console.handed_over = "stop"
    with client:
        if names:
            client.request("STOP", *(["-f"] if force else []), *names, on_progress=progress)
            return 0
        # everything: one SHUTDOWN, which jumps the queue (a start under way is interrupted, not
        # waited for) and leaves no moment between the servers' stop and the watcher's for a
        # start queued meanwhile to bring anything up again
        pid = client.pid or _recorded_pid(root)
        client.request("SHUTDOWN", *(["-f"] if force else []), on_progress=progress)
        progress("T", f"Stopping watcher {pid} ")
    _wait_gone(pid)
    progress("L", "..." + M.DONE)
    return 0


def _recorded_pid(root) -> int | None:
    from msgsrv.watcher.daemon import watcher_pid

    return watcher_pid(root)


def _wait_gone(pid: int | None, timeout: float = 10.0) -> None:
    import os
    import select

    if not pid:
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    return run(cli, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
