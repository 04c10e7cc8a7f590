"""Exit statuses and the exceptions that carry them (SPEC §3 "Exit codes")."""

import os
from enum import IntEnum
from pathlib import Path


class ExitStatus(IntEnum):
    OK = 0
    FAILED = 1  # the operation failed: a server did not start, a probe failed
    USAGE = 2  # bad option or argument, unknown parameter, invalid value


class MsgsrvError(Exception):
    """An error shown to the user as one line on stderr."""

    exit_code = ExitStatus.FAILED


class UsageError(MsgsrvError):
    exit_code = ExitStatus.USAGE


class OperationFailed(MsgsrvError):
    exit_code = ExitStatus.FAILED


def os_reason(e: OSError) -> str:
    """`read-only file system`, `no space left on device`: the errno text as an admin says it."""
    return (e.strerror or str(e)).lower()


def file_problem(e: OSError) -> str:
    """One line for an OSError naming a file: `/srv/msgsrv/config: permission denied (/srv/msgsrv
    belongs to mail: run as mail)`; the owner is named when it is not who runs the command."""
    line = f"{e.filename}: {os_reason(e)}"
    return line + _owner_hint(str(e.filename)) if isinstance(e, PermissionError) else line


def _owner_hint(path: str) -> str:
    found = foreign_owner(path)
    return f" ({found[0]} belongs to {found[1]}: run as {found[1]})" if found else ""


def foreign_owner(path) -> tuple[Path, str] | None:
    """(the nearest existing of PATH and its parents, its owner's name) when that owner is not who
    runs this process; None when it is ours (or nothing can be looked at)."""
    for p in (Path(path), *Path(path).parents):
        try:
            uid = p.stat().st_uid
        except OSError:
            continue
        if uid == os.geteuid():
            return None
        import pwd

        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = f"uid {uid}"
        return p, name
    return None
