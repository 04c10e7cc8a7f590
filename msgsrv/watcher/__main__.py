"""`python -m msgsrv.watcher [--ha]`: the watcher daemon as start-msg launches it.

The same daemon as `watcher [--ha]` (msgsrv/cli/watcher.py), with the same one-line errors and exit
codes, but without click: the daemon's start is on the path of every cold `start-msg`, and click
costs it ~30 ms. Any other arguments go to the `watcher` command itself.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from msgsrv.control import notify

    notify.take()  # start-msg's pipe, if it launched us: READY, or why not (control/notify.py)
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--ha"]):
        from msgsrv.cli.watcher import main as watcher_main

        return watcher_main(args)
    from msgsrv.cli.main import failed, message

    try:
        import asyncio

        from msgsrv.paths import ServerRoot
        from msgsrv.watcher.daemon import run as run_daemon

        return asyncio.run(run_daemon(ServerRoot.from_env(), ha=args == ["--ha"]))
    except Exception as e:  # noqa: BLE001 - as msgsrv.cli.main.run: one line, no traceback
        notify.failed(f"watcher: {message(e)}")
        return failed("watcher", e)
    except KeyboardInterrupt as e:
        return failed("watcher", e)


if __name__ == "__main__":
    sys.exit(main())
