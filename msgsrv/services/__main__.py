"""`msgsrv-server COMPONENT` (also `python -m msgsrv.services COMPONENT`): run one built-in
server in the foreground. This is what the watcher starts for a component unless
`local.<component>.command` names another program: forked from its own image
(watcher/prefork.py, which calls run()), or exec'd with `local.watcher.prefork no`.

Exit status: 0 after SIGTERM, 1 when a listener cannot be bound, 2 for a usage error, 70 when
the fault switch asked for a crash. See msgsrv-server(8).
"""

from __future__ import annotations

import importlib
import os
import sys

# component -> module under msgsrv.services (each exports SERVICE, a Service subclass)
MODULES = {
    "store": "stored",
    "imap": "imap",
    "pop": "pop",
    "http": "http",
    "dispatcher": "dispatcher",
    "job_controller": "job_controller",
    "ens": "ens",
    "mmp": "mmp",
    "cert": "cert",
    "sched": "sched_health",
}
# what the servers import while they run (lazily, inside functions): the watcher imports these too
# before it forks them (watcher/prefork.py), so a forked server imports nothing and shares their pages
_STORE = ("msgsrv.store.mailbox", "msgsrv.store.users", "msgsrv.store.legacy")
_LOGINS = (*_STORE, "msgsrv.services.logins", "msgsrv.services.gate")
PRELOAD_ALL = ("msgsrv.config.store", "msgsrv.control.registration", "msgsrv.control.listeners", "msgsrv.tls",
               "ssl", "email.utils", "setproctitle")
PRELOAD = {
    "store": _STORE,
    "imap": _LOGINS,
    "pop": _LOGINS,
    "http": (*_LOGINS, "h11"),
    "dispatcher": (*_STORE, "aiosmtpd.smtp", "aiosmtpd.lmtp"),
    "job_controller": _STORE,
    # not cryptography (~45 ms, ~10 MiB): certd, which starts together with the first servers,
    # imports it in its own process, off the critical path of a cold start; no other server uses it
    "cert": (),
    "sched": ("msgsrv.sched.imsched",),
}
USAGE = "usage: msgsrv-server COMPONENT   (one of: " + " ".join(MODULES) + ")"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in MODULES:
        if args and args[0] in ("-h", "--help"):
            print(USAGE)
            return 0
        print(f"msgsrv-server: {'unknown component ' + repr(args[0]) if args else 'missing COMPONENT'}",
              file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    return run(args[0])


def run(component: str) -> int:
    """Serve COMPONENT (a key of MODULES) until it stops; its exit status."""
    os.umask(0o077)  # SPEC §3: files 0600, directories 0700
    from msgsrv.paths import ServerRoot

    root = ServerRoot.from_env().ensure()
    module = importlib.import_module(f"msgsrv.services.{MODULES[component]}")
    return module.SERVICE(root).main()


if __name__ == "__main__":
    sys.exit(main())
