"""A live watcher with its console on free ports, and a small HTTP client that keeps the session.

Two suites, each shared by one test module: `fake` supervises the stand-in servers of
tests/watcher/fakesrv.py (quick to start), `builtin` the real built-in servers (msprobe gets real
answers from them). Every port is a free one on 127.0.0.1, MSGSRV_BASE is a temporary directory.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import command_path, free_ports, wait_for

FAKE = Path(__file__).resolve().parent.parent / "watcher" / "fakesrv.py"
PORT_PARAMS = ("local.watcher.port", "local.watcher.httpport", "local.store.port", "service.imap.port",
               "service.pop.port", "service.http.port", "service.smtp.port", "service.lmtp.port", "local.ens.port",
               "local.job_controller.port", "local.cert.port", "local.sched.port", "service.imap.sslport",
               "service.pop.sslport", "service.http.sslport", "service.smtp.sslport", "local.mmp.imapport",
               "local.mmp.popport")
STORE = ("store", "imap", "pop", "http")
FAKE_PORT = {"store": "local.store.port", "imap": "service.imap.port", "pop": "service.pop.port",
             "http": "service.http.port"}


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.text[:200]!r}>"


class Client:
    """One browser-like client: remembers the session cookie and the page's CSRF token."""

    def __init__(self, port: int):
        self.port = port
        self.cookie: str | None = None
        self.csrf: str | None = None

    def request(self, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None,
                csrf: bool = True, timeout: float = 30) -> Response:
        h = dict(headers or {})
        if self.cookie:
            h.setdefault("Cookie", self.cookie)
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            h.setdefault("X-CSRF-Token", self.csrf)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body=None, **kw) -> Response:
        return self.request("POST", path, body=body, **kw)

    def login(self, token: str) -> Client:
        r = self.get(f"/?token={token}")
        assert r.status == 303, r
        m = re.match(r"msgsrv_console=([^;]+)", r.headers["Set-Cookie"])
        self.cookie = f"msgsrv_console={m.group(1)}"
        page = self.get("/")
        assert page.status == 200, page
        self.csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)
        return self


class Live:
    def __init__(self, base: Path):
        self.base = base
        self.env = {**os.environ, "MSGSRV_BASE": str(base)}
        self.env.pop("MSGSRV_DEBUG", None)
        self.ports: dict[str, int] = {}

    def cli(self, cmd: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([command_path(cmd), *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout)

    def configure(self, builtin: bool, **extra: str) -> None:
        self.ports = dict(zip(PORT_PARAMS, free_ports(len(PORT_PARAMS)), strict=True))
        settings = {k: str(v) for k, v in self.ports.items()}
        settings.update({"local.autorestart": "yes", "local.schedule.msprobe.enable": "no",
                         "service.pop.numprocesses": "2"})
        if not builtin:
            for c in ("ens", "sched", "cert", "imta"):
                settings[f"local.{c}.enable"] = "no"
            for c, param in FAKE_PORT.items():
                settings[f"local.{c}.command"] = f"{sys.executable} -S {FAKE} {self.ports[param]}"
        settings.update(extra)
        f = self.base.parent / "settings.txt"
        self.base.mkdir(parents=True, exist_ok=True)
        f.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        r = self.cli("configutil", "-i", str(f))
        assert r.returncode == 0, r.stderr

    def start(self, wait_console: bool = True) -> subprocess.CompletedProcess:
        r = self.cli("start-msg")
        assert r.returncode == 0, r.stdout + r.stderr
        if wait_console:
            wait_for(lambda: self.url_file().exists(), timeout=10)
        return r

    def stop(self) -> None:
        watcher = self.pids("watcher")
        self.cli("stop-msg", "-f", timeout=60)
        for c in ("watcher", "ens", *STORE, "cert", "sched", "dispatcher", "job_controller", "mmp"):
            for pid in self.pids(c):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
        for pid in watcher:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    # -- facts ---------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.ports["local.watcher.httpport"]

    @property
    def token(self) -> str:
        return (self.base / "data" / "run" / "watcher.token").read_text().strip()

    def url_file(self) -> Path:
        return self.base / "data" / "run" / "console.url"

    def pids(self, c: str) -> list[int]:
        try:
            return [d["pid"] for d in json.loads((self.base / "data" / "run" / f"{c}.pid").read_text())]
        except (OSError, ValueError):
            return []

    def log_lines(self) -> list[str]:
        try:
            text = (self.base / "data" / "log" / "watcher").read_text()
        except FileNotFoundError:
            return []
        return [ln.split("] ", 1)[1] if ln.startswith("[") else ln for ln in text.splitlines()]

    def client(self) -> Client:
        return Client(self.port)

    def session(self) -> Client:
        return Client(self.port).login(self.token)

    def state(self, c: str) -> str:
        return next(r for r in self.session_status()["components"] if r["name"] == c)["state"]

    def session_status(self) -> dict:
        if not hasattr(self, "_api"):
            self._api = self.session()
        return self._api.get("/api/status").json()

    def wait_running(self, *components: str, timeout: float = 20) -> None:
        def ok():
            rows = {r["name"]: r for r in self.session_status()["components"]}
            return all(rows[c]["state"] == "RUNNING" and rows[c]["pids"] for c in components)

        wait_for(ok, timeout=timeout, every=0.05)


def start_live(tmp_path_factory, builtin: bool, wait_console: bool = True, **extra: str) -> Live:
    live = Live(tmp_path_factory.mktemp("console") / "root")
    live.configure(builtin, **extra)
    try:
        live.start(wait_console)
    except BaseException:
        live.stop()
        raise
    return live
