"""Pre-forked built-in servers (issue 14): a (re)start forks the watcher instead of exec'ing Python.

gunicorn's arbiter is the model. The watcher imports every built-in server's code once, before it
serves anything (preload), and freezes the collector (gc.freeze), so the pages of that code stay
shared copy-on-write with every server it forks. A (re)start of a built-in server is then a fork:
no interpreter start, no imports; the child only binds, registers and serves. The watcher stays
the parent of every server: pidfds, waitid reaping, process groups and cgroups, adoption and
`stop-msg -f` work as for an exec'd one (children.py does the rest exactly as for posix_spawn).

The child starts from the middle of the watcher's event loop, with the watcher's descriptors,
signal handlers, threads' locks and environment. Before it runs any server code it leaves all of
that behind, in this order (`_become_server`):

0. any import another thread of the watcher was in the middle of (a worker thread's lazy import;
   the console's loading keeps forks out altogether, forkguard.py): its half made module and the
   module locks it held, which no thread of the child would ever release;
1. its own session (setsid), like posix_spawn's setsid, and the OOM score the watcher was started
   with (the watcher's lower one is its own, oom.py);
2. the signal dispositions of a fresh interpreter, no wakeup fd, and then signals unblocked (they
   are blocked across fork, so no watcher handler can run in the child in between);
3. stdin from /dev/null, stdout and stderr to data/log/<component>.out, and every other descriptor
   closed except the listening sockets named in MSGSRV_LISTEN_FDS: not the watcher's lock, control
   and console sockets, journal, pidfds or epoll;
4. its cgroup joined (cgroup.procs) from a thread, while the server binds; it registers with the
   watcher (readiness) only once joined;
5. the process title `msgsrv-server <component>` (setproctitle, set before the environment is
   replaced: it finds the argv area through it; comm becomes the daemon's name in Service.main);
6. the environment the watcher built for it (operations.child_env), fresh sys.stdout/sys.stderr
   (the watcher's may be locked by one of its threads), no logging handlers, no event loop, umask
   0o077;

then the server's own `main()` in a fresh event loop, and os._exit with its status: it never
returns into the watcher's code, nor runs the watcher's atexit handlers or finally blocks.

What a forked server cannot change: /proc/<pid>/environ shows what the kernel saw at the watcher's
execve (the watcher's environment, without MSGSRV_COMPONENT), and /proc/<pid>/exe is the watcher's
interpreter. Nothing of the suite identifies its processes by either (they use pid and start time;
children._same falls back on the working directory, the server root, for a forked one).
`local.watcher.prefork no` goes back to exec'ing `python -m msgsrv.services COMPONENT`.
"""

from __future__ import annotations

import _thread
import contextlib
import gc
import importlib
import os
import resource
import select
import signal
import sys
import traceback
import warnings
from pathlib import Path

from msgsrv import forkguard
from msgsrv.watcher import oom

TITLE = "msgsrv-server {c}"
EX_SOFTWARE = 70  # the child could not become a server (sysexits.h)

_preloaded: list[str] = []


def preload(components: list[str]) -> list[str]:
    """Import the built-in servers of COMPONENTS and what they import while they run; freeze the
    collector. The modules imported (a module that cannot be imported here is left for the child
    to import, and to fail on in its own log).

    Called before the watcher's event loop serves anything, for the enabled built-in components
    (a suite of external commands preloads nothing). A component enabled later is forked all the
    same, and imports its code in the child."""
    from msgsrv.services.__main__ import MODULES, PRELOAD, PRELOAD_ALL

    names: list[str] = []
    for c in components:
        if c in MODULES:
            names += [*PRELOAD_ALL, f"msgsrv.services.{MODULES[c]}", *PRELOAD.get(c, ())]
    for name in dict.fromkeys(names):
        if name in _preloaded:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the child will import it again and say what is wrong
            continue
        _preloaded.append(name)
    # the collector of the watcher (and of every child, which freezes again) never walks these
    gc.freeze()
    return list(_preloaded)


def fork_server(component: str, env: dict[str, str], log_path: Path, cgroup: Path | None,
                keep: set[int]) -> int | None:
    """Fork the built-in server COMPONENT; the child's pid, or None when a fork is not safe now (a
    worker thread of the watcher holds a C library's process-wide lock: forkguard.py), and the
    caller exec's the server instead. Never returns in the child.

    Raises OSError (EAGAIN, ENOMEM) when no process can be made."""
    with forkguard.fork_allowed() as allowed:
        if not allowed:
            return None
        # signals blocked across the fork: a SIGTERM that reached the child before it reset its
        # handlers would run the watcher's handler, which writes to the watcher's own wakeup socket
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns when a process with threads forks (the console's executor may
                # have some): the child touches none of their locks (fresh stdio, logging and event
                # loop), and none of them is inside SQLite or OpenSSL (forkguard)
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            raise
        if pid == 0:
            _child(component, env, log_path, cgroup, keep)  # never returns
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return pid


def _child(component: str, env: dict[str, str], log_path: Path, cgroup: Path | None, keep: set[int]) -> None:
    status = EX_SOFTWARE
    try:
        _become_server(component, env, log_path, cgroup, keep)
        from msgsrv.services.__main__ import run

        status = run(component)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child must reach os._exit whatever happens
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        os._exit(status & 0xFF if isinstance(status, int) else 1)


def _become_server(component: str, env: dict[str, str], log_path: Path, cgroup: Path | None,
                   keep: set[int]) -> None:
    gc.freeze()  # the watcher's objects: never walked by this process's collector (copy-on-write)
    _forget_imports_in_progress()
    os.setsid()
    oom.give_back()  # the watcher's OOM protection is its own (oom.py)
    _fresh_signals()
    problem = _descriptors(log_path, keep)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if cgroup is not None:
        _join_cgroup_soon(cgroup)
    _set_title(TITLE.format(c=component))  # before environ changes: setproctitle finds argv through it
    _take_environment(env)
    os.umask(0o077)  # SPEC §3: files 0600, directories 0700
    _fresh_stdio()
    _fresh_logging()
    _fresh_asyncio()
    sys.argv = ["msgsrv-server", component]
    if problem:
        from msgsrv import logfmt
        from msgsrv.components import BY_NAME

        with contextlib.suppress(OSError):
            logfmt.append(log_path.parent / "default", f"{BY_NAME[component].daemon}[{os.getpid()}] Warning: {problem}")


def _take_environment(env: dict[str, str]) -> None:
    """os.environ becomes ENV. ENV is the watcher's environment and a few MSGSRV_ variables, so only
    what differs is set or removed: clearing and setting every variable again would write (refcounts,
    the C environment's strings) to hundreds of pages shared with the watcher, ~0.4 MB per server."""
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


_join_done: int | None = None  # read end of a pipe whose write end the joining thread closes


def _join_cgroup_soon(cgroup: Path) -> None:
    """Join CGROUP from a thread. Writing cgroup.procs waits for the kernel's cgroup lock (about
    10 ms here, a third of a restart): the server binds and serves meanwhile, and registers with
    the watcher (readiness) only once it has joined (`cgroup_joined`). A built-in server starts no
    process of its own, so nothing can leave the cgroup's reach in between.

    A bare _thread, and the end of a pipe for "joined": threading.Thread's machinery, and an
    executor thread for the registration to wait in, cost each server ~0.3 MB of pages it shared
    with the watcher."""
    global _join_done
    done, end = os.pipe()

    def join() -> None:
        try:
            with open(cgroup / "cgroup.procs", "w") as f:
                f.write("0")  # moves this process (cgroup.join_argv does the same for an exec)
        except OSError:
            pass  # as for an exec: process groups still hold it
        finally:
            os.close(end)

    _join_done = done
    _thread.start_new_thread(join, ())


def cgroup_joined(timeout: float = 5.0) -> None:
    """Wait until this forked server is in its cgroup (at once when it was never to join one)."""
    if _join_done is not None:
        select.select([_join_done], [], [], timeout)


async def cgroup_joined_soon(timeout: float = 5.0) -> None:
    """cgroup_joined() in the event loop: it waits for the pipe's end of file."""
    import asyncio

    if _join_done is None:
        return
    loop = asyncio.get_running_loop()
    joined = loop.create_future()

    def readable() -> None:
        loop.remove_reader(_join_done)
        if not joined.done():
            joined.set_result(None)

    loop.add_reader(_join_done, readable)
    try:
        await asyncio.wait_for(joined, timeout)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(_join_done)


def joining_cgroup() -> bool:
    return _join_done is not None and not select.select([_join_done], [], [], 0)[0]


def _fresh_signals() -> None:
    """The dispositions a new interpreter has: SIGINT raises KeyboardInterrupt, SIGPIPE is ignored,
    every other signal the watcher handled is back to its default; no wakeup fd."""
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        try:
            handler = signal.getsignal(sig)
        except (OSError, ValueError):
            continue
        if sig == signal.SIGINT:
            want = signal.default_int_handler
        elif sig == signal.SIGPIPE:
            want = signal.SIG_IGN
        elif callable(handler) or sig in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM,
                                           signal.SIGUSR1, signal.SIGUSR2):
            want = signal.SIG_DFL
        else:
            continue
        if handler is not want:
            try:
                signal.signal(sig, want)
            except (OSError, ValueError):
                pass


def _descriptors(log_path: Path, keep: set[int]) -> str | None:
    """0 from /dev/null, 1 and 2 to LOG_PATH; everything else closed but KEEP. A LOG_PATH that
    cannot be opened (its permissions, a full inode table) costs the output, never the server:
    1 and 2 go to /dev/null and the reason is returned, for the default log."""
    null = os.open("/dev/null", os.O_RDONLY)
    problem = None
    try:
        out = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as e:
        from msgsrv.watcher.children import output_lost

        out = os.open("/dev/null", os.O_WRONLY)
        problem = output_lost(log_path, e)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    kept = sorted(fd for fd in keep if fd > 2)
    if null > 2 and null not in kept:
        os.close(null)
    if out > 2 and out not in kept:
        os.close(out)
    top = max(resource.getrlimit(resource.RLIMIT_NOFILE)[0], (kept[-1] + 1) if kept else 0, 1024)
    low = 3
    for fd in kept:
        os.closerange(low, fd)  # close_range(2) where the kernel has it
        os.set_inheritable(fd, False)
        low = fd + 1
    os.closerange(low, top)
    return problem


def _fresh_stdio() -> None:
    """New stream objects on 1 and 2: the watcher's may be held (their lock) by one of its threads,
    which do not exist here. The old objects are kept alive so that nothing flushes or closes them."""
    _kept_alive.extend((sys.stdout, sys.stderr, sys.stdin))
    sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1,  # noqa: SIM115
                      closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1,  # noqa: SIM115
                      closefd=False)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


_kept_alive: list = []


def _forget_imports_in_progress() -> None:
    """Drop what an import running on another thread of the watcher left at the fork: its module,
    half executed, and the module locks that thread held (worker threads import lazily while the
    loop goes on forking servers; the console's loading, the longest, keeps forks out: forkguard).
    In the child that thread is gone and
    never lets go: the server's own first import of the same module would wait for ever (seen with
    a module whose import takes a while, on Python 3.11 to 3.13), or find the module half made. The
    modules are imported again from scratch if the server needs them; locks are made anew."""
    bootstrap = sys.modules.get("_frozen_importlib")
    if not getattr(bootstrap, "_module_locks", True):
        # no import was under way at the fork (a module lock lives only while its import runs):
        # leave sys.modules untouched, since looking at every module and its spec would make their
        # pages this child's own (copy-on-write: +0.9 MiB of PSS per server, measured)
        return
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if spec is not None and getattr(spec, "_initializing", False) is True:
            del sys.modules[name]
    for table in ("_module_locks", "_blocking_on"):
        held = getattr(bootstrap, table, None)
        if hasattr(held, "clear"):
            held.clear()


def _fresh_logging() -> None:
    """No handler of the watcher's (their streams and sockets are closed here)."""
    logging = sys.modules.get("logging")
    if logging is None:
        return
    for logger in [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values()
                                           if isinstance(v, logging.Logger))]:
        for h in list(logger.handlers):
            logger.removeHandler(h)
            _kept_alive.append(h)


def _fresh_asyncio() -> None:
    """No event loop: the server's asyncio.run() makes its own (the watcher's is on the stack here)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    asyncio.events._set_running_loop(None)
    _kept_alive.append(asyncio.get_event_loop_policy())
    asyncio.set_event_loop_policy(None)


def _set_title(title: str) -> None:
    """`ps` and psutil's cmdline show TITLE instead of the watcher's command line. SPT_NOENV keeps
    setproctitle inside the watcher's argv area, so /proc/<pid>/environ stays readable."""
    os.environ["SPT_NOENV"] = "1"
    try:
        import setproctitle

        setproctitle.setproctitle(title)
        _end_args()
    except Exception:  # noqa: BLE001 - a title is cosmetic; Service.main still sets comm
        pass
    finally:
        os.environ.pop("SPT_NOENV", None)


def _end_args() -> None:
    """setproctitle pads the argv area with NULs, so /proc/<pid>/cmdline would end in empty arguments.
    A non-NUL last byte is the kernel's sign of a rewritten title: it then shows the title alone,
    up to its NUL (fs/proc/base.c get_mm_proctitle), and psutil reads ['msgsrv-server', 'imap']."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    arg_end = int(fields[46])  # field 49 of proc(5), counted from the state (field 3)
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(arg_end - 1)
        mem.write(b" ")
