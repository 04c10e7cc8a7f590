"""A supervised suite of stand-in servers (tests/watcher/fakesrv.py as local.<c>.command) on free
ports, so the watcher's own behaviour is tested apart from the built-in protocol servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import command_path, free_ports, wait_for  # noqa: F401  (re-exported for the watcher tests)

FAKE = Path(__file__).with_name("fakesrv.py")
STORE = ("store", "imap", "pop", "http")
PORT_PARAM = {"store": "local.store.port", "imap": "service.imap.port", "pop": "service.pop.port",
              "http": "service.http.port"}


def seed_restart_sequence(old: dict[str, list[int]], store_check: bool) -> list[str]:
    """The seed's log lines after `Watched 'imapd' ... exited abnormally`, as regular expressions.
    STORE_CHECK: the built-in store's `checking store server status ... ready` line is expected."""
    return [
        r"Received request to restart:  store imap pop http",
        r"Connecting to watcher \.\.\.",
        rf"Stopping http server {old['http'][0]} \.+ done",
        *[rf"Stopping pop server {p} \.+ done" for p in old["pop"]],
        r"imap server is not running",
        rf"Stopping store server {old['store'][0]} \.+ done",
        r"Starting store server \.+ \d+",
        *([r"checking store server status \.+ ready"] if store_check else []),
        r"Starting imap server \.+ \d+",
        r"Starting pop server \.+ \d+ \d+ \d+ \d+",
        r"Starting http server \.+ \d+",
    ]


class Suite:
    def __init__(self, root, cli):
        self.root = root
        self.cli = cli
        self.base = root.base

    def configure(self, **extra: str) -> None:
        ports = free_ports(5)
        self.watcher_port = ports[0]
        settings = {"local.watcher.port": str(ports[0]), "local.watcher.httpport": "0", "local.autorestart": "yes",
                    "service.pop.numprocesses": "4", "local.schedule.msprobe.enable": "no"}
        for c in ("ens", "sched", "cert", "imta"):
            settings[f"local.{c}.enable"] = "no"
        self.ports = {}
        for c, p in zip(STORE, ports[1:]):
            self.ports[c] = p
            settings[PORT_PARAM[c]] = str(p)
            settings[f"local.{c}.command"] = f"{sys.executable} {FAKE} {p}"
        settings.update(extra)
        text = "".join(f"{k}={v}\n" for k, v in settings.items())
        f = self.base / "import.txt"
        f.write_text(text)
        r = self.cli("configutil", "-i", str(f))
        assert r.returncode == 0, r.stderr

    def pids(self, c: str) -> list[int]:
        try:
            return [d["pid"] for d in json.loads(self.root.pid_file(c).read_text())]
        except (OSError, ValueError):
            return []

    def watcher_pid(self) -> int:
        return self.pids("watcher")[0]

    def log(self) -> str:
        try:
            return self.root.watcher_log.read_text()
        except FileNotFoundError:
            return ""

    def log_lines(self) -> list[str]:
        """Watcher log lines without their timestamps."""
        return [ln.split("] ", 1)[1] if ln.startswith("[") else ln for ln in self.log().splitlines()]

    def status(self) -> dict:
        r = self.cli("watcher", "status", "--json")
        assert r.returncode == 0, r.stderr
        return {c["name"]: c for c in json.loads(r.stdout)["components"]}

    def kill(self, pid: int, sig=signal.SIGKILL) -> None:
        os.kill(pid, sig)

    def stop_all(self) -> None:
        self.cli("stop-msg", "-f", timeout=60)


@pytest.fixture
def suite(root, cli):
    s = Suite(root, cli)
    yield s
    subprocess.run([command_path("stop-msg"), "-f"], capture_output=True, timeout=60)
    for c in ("watcher", *STORE):
        for pid in s.pids(c):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
