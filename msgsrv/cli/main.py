"""run(): the one place that turns exceptions into one stderr line and an exit code.

MSGSRV_DEBUG=1 shows the traceback of an unexpected error; nobody else sees one.
"""

from __future__ import annotations

import os
import sys

from msgsrv.errors import ExitStatus, MsgsrvError, file_problem


def error(prog: str, message: str) -> None:
    sys.stderr.write(f"{prog}: {message}\n")
    sys.stderr.flush()


def run(command, prog: str, args: list[str] | None = None) -> int:
    import click

    try:
        rv = command.main(args=args, prog_name=prog, standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        error(prog, "aborted")
        return ExitStatus.FAILED
    except click.exceptions.UsageError as e:
        error(prog, e.format_message().replace("\n", " "))
        return ExitStatus.USAGE
    except click.ClickException as e:
        error(prog, e.format_message().replace("\n", " "))
        return e.exit_code
    except (MsgsrvError, KeyboardInterrupt, BrokenPipeError, Exception) as e:
        return failed(prog, e)


def message(e: BaseException) -> str | None:
    """The one line failed() writes for E (without the program's name), or None for none."""
    if isinstance(e, MsgsrvError):
        return str(e)
    if isinstance(e, (KeyboardInterrupt, BrokenPipeError)):
        return None
    if isinstance(e, OSError) and e.filename:
        return file_problem(e)  # the environment, not a bug: which file, and why
    return f"internal error: {type(e).__name__}: {e}"


def failed(prog: str, e: BaseException) -> int:
    """The exit code of an exception that is not click's (after its one stderr line)."""
    if isinstance(e, MsgsrvError):
        error(prog, message(e))
        return e.exit_code
    if isinstance(e, KeyboardInterrupt):
        return 130
    if isinstance(e, BrokenPipeError):
        return ExitStatus.FAILED
    # the last line of defence: one line, no traceback
    if os.environ.get("MSGSRV_DEBUG") == "1":
        raise e
    error(prog, message(e))
    return ExitStatus.FAILED
