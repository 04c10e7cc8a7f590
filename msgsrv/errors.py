"""Exit statuses and the exceptions that carry them (SPEC §3 "Exit codes")."""

from enum import IntEnum


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
