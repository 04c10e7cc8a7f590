"""configutil: get, set, delete, list, import and validate parameters.

`configutil -o NAME` and `configutil -o NAME -v VALUE` are run by scripts in loops, so main()
answers them without importing click, rich or a TOML parser whenever it can: a get from the
store's derived cache when it is current (config/store.py), a set by a line edit when the store
is a simple one (config/quickedit.py). Anything else, every error included, takes the full
click command, which says what is wrong.
"""

from __future__ import annotations

import sys

PROG = "configutil"


def _fast_get(argv: list[str]) -> int | None:
    """Answer `-o NAME` / `-f FILE -o NAME` from the cache; None = take the full path."""
    if len(argv) == 2 and argv[0] == "-o":
        path, name = None, argv[1]
    elif len(argv) == 4 and argv[0] == "-o" and argv[2] == "-f":
        path, name = argv[3], argv[1]
    elif len(argv) == 4 and argv[0] == "-f" and argv[2] == "-o":
        path, name = argv[1], argv[3]
    else:
        return None
    from pathlib import Path

    from msgsrv.config import catalogue
    from msgsrv.config.store import cached_get

    if catalogue.lookup(name) is None:
        return None
    if path is None:
        from msgsrv.paths import ServerRoot

        path = ServerRoot.from_env().config_file
    hit, value = cached_get(Path(path), name)
    if not hit:
        return None
    if value is not None:
        sys.stdout.write(value + "\n")
    return 0


def _held_by_a_server(name: str) -> bool:
    """A port or worker count a running server keeps until it restarts (configutil_cmd's notice):
    the same names as configutil_cmd.held_parameters, told without importing the component table."""
    parts = name.split(".")
    return len(parts) == 3 and parts[0] in ("service", "local") and parts[2] in ("port", "sslport", "numprocesses",
                                                                              "imapport", "popport")


def _fast_set(argv: list[str]) -> int | None:
    """`-o NAME -v VALUE`, with `-f FILE` anywhere: a line edit of a simple store; None = take
    the full path (which also produces every error message)."""
    if len(argv) not in (4, 6) or argv[0::2] and sorted(argv[0::2]) not in (["-o", "-v"], ["-f", "-o", "-v"]):
        return None
    opts = dict(zip(argv[0::2], argv[1::2]))
    name, value, path = opts["-o"], opts["-v"], opts.get("-f")
    if name == "local.watcher.port":
        return None  # may need the running-watcher notice
    from msgsrv.config import rules
    from msgsrv.config.quickedit import set_simple

    try:
        rules.check_value(name, value)
    except ValueError:
        return None
    from pathlib import Path

    if path is None:
        from msgsrv.paths import ServerRoot

        root = ServerRoot.from_env()
        try:
            root.ensure()
        except Exception:  # OperationFailed: the full path reports it
            return None
        if _held_by_a_server(name) and any(root.run_dir.glob("*.pid")):
            return None  # a server may run and keep the old value: the full path says so
        store = root.config_file
    else:
        store = Path(path)
        if not store.parent.is_dir():
            return None
    return 0 if set_simple(store, name, value) else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rc = _fast_get(argv)
    if rc is None:
        rc = _fast_set(argv)
    if rc is None:
        from msgsrv.cli.configutil_cmd import command
        from msgsrv.cli.main import run

        rc = run(command, PROG, argv)
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main())
