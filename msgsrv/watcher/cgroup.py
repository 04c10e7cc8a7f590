"""cgroup v2 per server process, where the watcher may create cgroups (issue 10 "No orphans").

A process group is left by anything that calls setsid() or setpgid(); a cgroup is not. Where the
cgroup v2 tree below the watcher's own cgroup is writable (running as root, or a systemd unit with
`Delegate=yes`), every server process gets its own cgroup,
`<watcher's cgroup>/msgsrv-<root tag>-<component>-<worker>`, joined before the program runs, and
`cgroup.kill` takes everything in it once the leader has exited. Elsewhere the watcher falls back to
process groups (children.py), whose limit is documented in watcher(8): a process that left the
group with setsid() survives its server.

Only controller-free cgroups are made (no cgroup.subtree_control writes), so the "no internal
processes" rule does not apply and the watcher may stay in its own cgroup. `local.watcher.cgroups no`
turns this off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

PREFIX = "msgsrv-"


def _mount() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid hosts)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] == "cgroup2":
            return Path(left.split()[4])
    return None


def _own_path(pid: int | str = "self") -> str | None:
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        return None
    return None


class Cgroups:
    def __init__(self, base: Path, tag: str):
        self.base = base  # the watcher's own cgroup directory
        self.tag = tag  # from the server root: watchers of two roots never share a cgroup

    @classmethod
    def detect(cls, root_path: Path) -> Cgroups | None:
        """Cgroups under our own cgroup when we may create them there, else None."""
        mount, own = _mount(), _own_path()
        if mount is None or own is None:
            return None
        base = mount / own.lstrip("/")
        if base.name.startswith(PREFIX):
            base = _leave_servers_cgroup(base)
        tag = hashlib.sha1(str(root_path).encode()).hexdigest()[:10]
        probe = base / f"{PREFIX}{tag}-probe-{os.getpid()}"
        try:
            probe.mkdir()
        except OSError:
            return None
        try:
            if not (probe / "cgroup.procs").exists():
                return None
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()
        return cls(base, tag)

    def path_for(self, component: str, worker: int) -> Path:
        return self.base / f"{PREFIX}{self.tag}-{component}-{worker}"

    def prepare(self, component: str, worker: int) -> Path | None:
        """An empty cgroup for one process (anything left in an old one is killed first)."""
        cg = self.path_for(component, worker)
        try:
            cg.mkdir(exist_ok=True)
        except OSError:
            return None
        if procs(cg):
            kill(cg)
        return cg

    def of_component(self, component: str) -> list[tuple[int, Path]]:
        """(worker, cgroup) of every cgroup of COMPONENT that exists under our base."""
        head = f"{PREFIX}{self.tag}-{component}-"
        out = []
        try:
            for entry in os.scandir(self.base):
                if entry.name.startswith(head) and entry.name[len(head):].isdigit() and entry.is_dir():
                    out.append((int(entry.name[len(head):]), Path(entry.path)))
        except OSError:
            return []
        return sorted(out)

    def owns(self, cg: str | None) -> bool:
        return bool(cg) and Path(cg).name.startswith(f"{PREFIX}{self.tag}-")


def _leave_servers_cgroup(cg: Path) -> Path:
    """A watcher started from inside a server's cgroup (msprobe run by imsched launching the
    watcher again, probe/watchdog.py) moves to the cgroup its servers' cgroups hang from: left
    there, it would make its servers' cgroups inside that server's, and the cgroup.kill that ends
    that server's leftovers would end the watcher too. Where it cannot move, CG stays."""
    up = cg
    while up.name.startswith(PREFIX):
        up = up.parent
    try:
        (up / "cgroup.procs").write_text("0")
    except OSError:
        return cg
    return up


def of_pid(pid: int) -> str | None:
    """The cgroup v2 directory PID is in, if it is one of ours (any root)."""
    mount, own = _mount(), _own_path(pid)
    if mount is None or own is None:
        return None
    path = mount / own.lstrip("/")
    return str(path) if path.name.startswith(PREFIX) else None


def join_argv(cg: Path, argv: list[str]) -> list[str]:
    """ARGV run so that it joins CG before the program starts (writing 0 moves the writer itself)."""
    return ["/bin/sh", "-c", 'echo 0 > "$0" 2>/dev/null; exec "$@"', str(cg / "cgroup.procs"), *argv]


def procs(cg: Path | str) -> list[int]:
    try:
        return [int(x) for x in Path(cg, "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill(cg: Path | str) -> None:
    """SIGKILL everything in CG (cgroup.kill, Linux 5.14+; else one by one)."""
    try:
        Path(cg, "cgroup.kill").write_text("1")
        return
    except OSError:
        pass
    import signal

    for pid in procs(cg):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def remove(cg: Path | str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(cg)
