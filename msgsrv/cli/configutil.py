"""configutil: get, set, delete, list, import and validate parameters.

`configutil -o NAME` is run by scripts in loops, so main() answers it without importing click,
rich or a TOML parser whenever the store's derived cache is current (see config/store.py).
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rc = _fast_get(argv)
    if rc is None:
        from msgsrv.cli.configutil_cmd import command
        from msgsrv.cli.main import run

        rc = run(command, PROG, argv)
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main())
