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
    for p in (Path(path), *Path(path).parents):
        try:
            uid = p.stat().st_uid
        except OSError:
            continue
        if uid == os.geteuid():
            return ""
        import pwd

        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = f"uid {uid}"
        return f" ({p} belongs to {name}: run as {name})"
    return ""
