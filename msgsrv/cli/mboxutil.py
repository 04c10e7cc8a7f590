"""mboxutil: the message store utility (list, create, delete mailboxes; add and list users).

A store utility that fails or hangs tells the watcher (`FAILED mboxutil <reason>`), which
restarts every store service when local.autorestart is yes (SPEC §1); the utility itself is not
restarted. A refused request (unknown user or mailbox, mailbox exists) is not a failure of the
store: exit 1, nothing reported.
"""

from __future__ import annotations

import sys
import threading

import click

PROG = "mboxutil"
DEFAULT_LIMIT = 60.0


# -- pure parts ---------------------------------------------------------------------------------
def split_name(name: str) -> tuple[str, str]:
    """`user/alice/Sent` (the original's form) or `alice/Sent` -> ("alice", "Sent"); a bare user
    name means that user's INBOX. ValueError when no user is named."""
    parts = name.split("/")
    if parts[0] == "user" and len(parts) >= 2:
        parts = parts[1:]
    user, mbox = parts[0], "/".join(parts[1:]) or "INBOX"
    if not user:
        raise ValueError(f"bad mailbox name '{name}': expected user/<user>/<mailbox>")
    return user, mbox


def is_refusal(exc: BaseException) -> bool:
    """A refused request (exit 1, store fine) versus a failure of the store (reported)."""
    from msgsrv.store.mailbox import MailboxError
    from msgsrv.store.users import UserError

    if isinstance(exc, UserError):
        return not str(exc).startswith("unable to")
    return isinstance(exc, MailboxError)


# -- the operations ------------------------------------------------------------------------------
def op_list(root, pattern: str | None) -> list[str]:
    import fnmatch

    from msgsrv.store.mailbox import Store

    store = Store(root)
    out = []
    for user in store.users():
        for mbox in store.mailboxes(user):
            full = f"user/{user}/{mbox}"
            if pattern is None or fnmatch.fnmatchcase(full, pattern) or fnmatch.fnmatchcase(f"{user}/{mbox}", pattern):
                out.append(full)
    return out


def _known_user(root, user: str) -> None:
    from msgsrv.store.mailbox import MailboxError
    from msgsrv.store.users import Users

    if not Users(root).exists(user):
        raise MailboxError(f"unknown user '{user}'")


def op_create(root, name: str) -> list[str]:
    from msgsrv.store.mailbox import Store

    user, mbox = split_name(name)
    _known_user(root, user)
    box = Store(root).create(user, mbox)
    return [f"created user/{user}/{box.name}"]


def op_delete(root, name: str) -> list[str]:
    from msgsrv.store.mailbox import Store

    user, mbox = split_name(name)
    _known_user(root, user)
    Store(root).delete(user, mbox)
    return [f"deleted user/{user}/{mbox}"]


def op_add_user(root, user: str, password: str) -> list[str]:
    from msgsrv.store.mailbox import Store
    from msgsrv.store.users import Users

    Users(root).add(user, password)
    box = Store(root).mailbox(user)
    box.ensure()
    return [f"added user {user}"]


def op_users(root) -> list[str]:
    from msgsrv.store.users import Users

    return Users(root).list()


# -- the time limit and the report to the watcher ------------------------------------------------
def report_failure(root, reason: str, session=None) -> str:
    """Log the failure and tell the watcher; returns a line for stderr about the report."""
    from msgsrv import logfmt
    from msgsrv.control.client import report_utility_failure
    from msgsrv.errors import OperationFailed

    try:
        logfmt.default_log(root, PROG, "Error", f"store utility failed: {reason}")
    except OSError:
        pass
    try:
        answer = (session.report(PROG, reason) if session is not None and session.client is not None
                  else report_utility_failure(root, PROG, reason, timeout=5.0))
    except OperationFailed as e:
        return f"unable to report the failure to the watcher: {e}"
    if answer.outcome in ("restarting", "already"):
        return "failure reported to the watcher"
    return f"failure reported to the watcher ({answer.outcome}: {answer.text})"


def guarded(root, limit: float, op, *args) -> list[str]:
    """Run OP in a worker thread under LIMIT seconds, registered with the watcher as a store utility
    (a kill -9 of mboxutil closes that registration without BYE: the watcher restarts the store
    group, SPEC §1). A refusal re-raises (exit 1); any other failure or the time limit is reported
    to the watcher, then OperationFailed (exit 1)."""
    from msgsrv.control.client import UtilitySession
    from msgsrv.errors import OperationFailed

    box: dict = {}

    def work() -> None:
        try:
            box["value"] = op(root, *args)
        except BaseException as e:  # carried to the main thread and judged there
            box["error"] = e

    with UtilitySession(root, PROG) as session:
        t = threading.Thread(target=work, name="mboxutil-op", daemon=True)
        t.start()
        t.join(limit)
        if t.is_alive():
            reason = f"no answer from the store within {limit:g}s"
        elif "error" in box:
            e = box["error"]
            if isinstance(e, ValueError) or is_refusal(e):
                raise e
            reason = (f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror and e.filename
                      else str(e) or type(e).__name__)
        else:
            return box["value"]
        note = report_failure(root, reason, session)
    raise OperationFailed(f"{reason} ({note})")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-l", "--list", "listing", is_flag=True, help="List mailboxes (user/<user>/<mailbox>).")
@click.option("-p", "--pattern", metavar="PATTERN", help="With -l: only names matching PATTERN (* and ?).")
@click.option("-c", "--create", metavar="MAILBOX", help="Create MAILBOX (user/<user>/<mailbox>).")
@click.option("-d", "--delete", metavar="MAILBOX", help="Delete MAILBOX and its messages (not INBOX).")
@click.option("-a", "--add-user", metavar="USER", help="Add USER; the password is read from stdin.")
@click.option("-u", "--users", is_flag=True, help="List users.")
@click.option("-t", "--timeout", type=click.FloatRange(min=0.01), default=DEFAULT_LIMIT, show_default=True,
              help="Seconds the store may take before mboxutil gives up and reports a failure.")
def command(listing: bool, pattern: str | None, create: str | None, delete: str | None, add_user: str | None,
            users: bool, timeout: float) -> int:
    """List, create and delete mailboxes; add and list users.

    If the store fails or does not answer within the time limit, mboxutil reports the failure to
    the watcher, which restarts the store services when local.autorestart is yes. Exit status:
    0 done, 1 refused or failed (unknown user or mailbox, store failure), 2 usage error.
    """
    from msgsrv.errors import UsageError
    from msgsrv.paths import ServerRoot

    chosen = [n for n, v in (("-l", listing), ("-c", create), ("-d", delete), ("-a", add_user), ("-u", users))
              if v]
    if len(chosen) != 1:
        raise UsageError("expected exactly one of -l, -c, -d, -a, -u" + (f" (got {' '.join(chosen)})"
                                                                           if chosen else ""))
    if pattern is not None and not listing:
        raise UsageError("-p goes with -l")
    for name in (create, delete):
        if name is not None:
            try:
                split_name(name)
            except ValueError as e:
                raise UsageError(str(e)) from None
    root = ServerRoot.from_env().ensure()
    try:
        if listing:
            lines = guarded(root, timeout, op_list, pattern)
        elif create:
            lines = guarded(root, timeout, op_create, create)
        elif delete:
            lines = guarded(root, timeout, op_delete, delete)
        elif users:
            lines = guarded(root, timeout, op_users)
        else:
            lines = guarded(root, timeout, op_add_user, add_user, _password())
    except ValueError as e:
        raise UsageError(str(e)) from None
    for line in lines:
        click.echo(line)
    return 0


def _password() -> str:
    from msgsrv.errors import UsageError

    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UsageError("no password on stdin")
    return line


def main(argv: list[str] | None = None) -> int:
    from msgsrv.cli.main import run

    # a store operation stuck in its (daemon) thread does not keep the process alive
    return run(command, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
