"""run(): the one place that turns exceptions into one stderr line and an exit code.

MSGSRV_DEBUG=1 shows the traceback of an unexpected error; nobody else sees one.
"""

from __future__ import annotations

import os
import sys

from msgsrv.errors import ExitStatus, MsgsrvError, file_problem, os_reason


def error(prog: str, message: str) -> None:
    sys.stderr.write(f"{prog}: {message}\n")
    sys.stderr.flush()


def sane_stdio() -> None:
    """Descriptors 0, 1 and 2 open (on /dev/null where they were closed, as under some cron jobs
    and daemons), and sys.stdin/stdout/stderr with them: a closed stdout must not end a start
    half-way, nor let a socket or file opened later take descriptor 1 or 2."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False, buffering=1 if mode == "w" else -1))  # noqa: SIM115


def said_lost_output(prog: str) -> None:
    """One line on stderr when progress lines could not be written (cli/console.progress)."""
    from msgsrv.cli import console

    if console.lost is not None:
        error(prog, f"standard output: {os_reason(console.lost)}; "
                    "its lines were lost, not the work they tell of")


def _interrupted(prog: str) -> None:
    """Ctrl-C: the line under way ends, and one line says what goes on without us (a start or
    stop the watcher took goes on: the interrupt stops our waiting, not its work)."""
    from msgsrv.cli import console

    if console.line_open:
        console.progress("L", " interrupted")
    what = console.handed_over
    error(prog, f"interrupted; the watcher goes on with the {what} (watcher status shows where it is)"
          if what else "interrupted")


def run(command, prog: str, args: list[str] | None = None) -> int:
    import click

    sane_stdio()
    try:
        rv = command.main(args=args, prog_name=prog, standalone_mode=False)
        said_lost_output(prog)
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
        _interrupted(prog)
        return 130
    if isinstance(e, BrokenPipeError):
        return ExitStatus.FAILED
    # the last line of defence: one line, no traceback
    if os.environ.get("MSGSRV_DEBUG") == "1":
        raise e
    error(prog, message(e))
    return ExitStatus.FAILED
