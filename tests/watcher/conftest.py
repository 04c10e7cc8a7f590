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

from msgsrv.watcher.status import serving
from tests.conftest import command_path, free_ports, wait_for  # noqa: F401  (re-exported for the watcher tests)

FAKE = Path(__file__).with_name("fakesrv.py")
STORE = ("store", "imap", "pop", "http")
PORT_PARAM = {"store": "local.store.port", "imap": "service.imap.port", "pop": "service.pop.port",
              "http": "service.http.port", "ens": "local.ens.port", "dispatcher": "service.smtp.port",
              "job_controller": "local.job_controller.port"}
SIDE_PORTS = ("service.imap.sslport", "service.pop.sslport", "service.http.sslport", "service.smtp.sslport",
              "service.lmtp.port", "local.cert.port", "local.sched.port", "local.mmp.imapport", "local.mmp.popport")
SWITCH = {"ens": "local.ens.enable", "sched": "local.sched.enable", "cert": "local.cert.enable",
          "dispatcher": "local.imta.enable", "job_controller": "local.imta.enable"}


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

    def configure(self, components=STORE, args: dict[str, str] | None = None, **extra: str) -> None:
        """Stand-in servers (fakesrv.py) for COMPONENTS on free ports, autorestart yes, pop with 4
        workers; ARGS: extra fakesrv options per component; EXTRA: more settings."""
        components = tuple(components) + (("job_controller",) if "dispatcher" in components else ())
        ports = free_ports(1 + len(components) + len(SIDE_PORTS))
        ports, side = ports[: -len(SIDE_PORTS)], ports[-len(SIDE_PORTS) :]
        self.watcher_port = ports[0]
        settings = {"local.watcher.port": str(ports[0]), "local.watcher.httpport": "0", "local.autorestart": "yes",
                    "service.pop.numprocesses": "4", "local.schedule.msprobe.enable": "no",
                    # a test that switches a component to its built-in server gets its other ports free too
                    **{param: str(p) for param, p in zip(SIDE_PORTS, side)}}
        for c in ("ens", "sched", "cert", "imta"):
            settings[f"local.{c}.enable"] = "no"
        for c in STORE:
            if c not in components:
                settings[{"store": "local.store.enable"}.get(c, f"service.{c}.enable")] = "no"
        self.ports = {}
        for c, p in zip(components, ports[1:]):
            self.ports[c] = p
            settings[PORT_PARAM[c]] = str(p)
            settings[f"local.{c}.command"] = f"{sys.executable} -S {FAKE} {p} {(args or {}).get(c, '')}".strip()
            if c in SWITCH:
                settings[SWITCH[c]] = "yes"
        settings.update(extra)
        self.set(settings)

    def set(self, settings: dict[str, str]) -> None:
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
        """`watcher status --json` by component; its exit status (0: all enabled RUNNING and none
        frozen, 3: not) agrees."""
        r = self.cli("watcher", "status", "--json")
        assert r.returncode in (0, 3), r.stderr
        data = json.loads(r.stdout)
        comps = {c["name"]: c for c in data["components"]}
        all_up = all(serving(c) for c in comps.values() if c["enabled"])
        assert r.returncode == (0 if all_up else 3) == data["exit_status"], (r.returncode, comps)
        return comps

    def kill(self, pid: int, sig=signal.SIGKILL) -> None:
        os.kill(pid, sig)

    def stop_all(self) -> None:
        self.cli("stop-msg", "-f", timeout=60)


@pytest.fixture
def suite(root, cli):
    s = Suite(root, cli)
    yield s
    subprocess.run([command_path("stop-msg"), "-f"], capture_output=True, timeout=60)
    for c in ("watcher", *PORT_PARAM):
        for pid in s.pids(c):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
