"""msgsrv as one more peer of ../shared/bench (the supervisor harness): crash, hang, overhead, storm.

    BENCH_ADAPTERS=$PWD/bench/msgsrv_adapter.py BENCH_RESULTS=/tmp/bench-results \\
        MSGSRV_BIN=$PWD/.venv/bin /tmp/bench-venv/bin/python ../shared/bench/run.py \\
        --test crash --peers msgsrv,s6,runit,supervisord,monit

msgsrv supervises its named components, so each harness service becomes a component whose program
is the service (`local.<component>.command`); every other component is off, and every port the
suite would use is a free one. The watcher runs in the foreground as the adapter's root;
`start-msg` asks it to start the components. local.autorestart is yes.

crash   the TCP service is certd's stand-in (its own restart unit), ready when its port accepts.
hang    the TCP service is imapd's stand-in on service.imap.port (no IMAPS listener): msprobe's
        IMAP dialogue is the greeting `* OK` then `a1 LOGOUT` -> `* BYE` and `a1 OK`, which the
        harness service answers until SIGUSR1 hangs it. The built-in imsched runs the msprobe pass
        (in-process) every second; fast: `local.probe.imap.timeout 1`, default: the defaults
        (every 10 s, service.readtimeout 10). A hung imapd is restarted through the watcher.
storm   the storm script is certd's stand-in with `local.cert.ready = started` (it listens on
        nothing): the budget's 3 starts (start + 2 restarts), then FATAL.
overhead  N `sleep` children: the workers of imap, pop and http (`service.<svc>.numprocesses`,
        at most 256 each; a worker runs `sh -c 'shift $MSGSRV_WORKER; exec "$1" 1000000'` over the
        harness's per-child symlinks, so each worker carries its own token), then one child for each
        other component: at most 3 x 256 + 7 = 775. All `ready = started`.

Restart window: fast 1 s (the harness's kills, 1.5 s or more apart, are never throttled by the
budget; with msprobe every second the cross-field rule allows no less), default 600 s.
MSGSRV_BIN: the directory of msgsrv's console scripts (default: next to this interpreter).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from adapters.base import Adapter, run_quiet

BIN = Path(os.environ.get("MSGSRV_BIN", Path(sys.executable).parent))
# enable switch and port parameters of every component (msgsrv/components.py), in start order
COMPONENTS = {
    "ens": ("local.ens.enable", ("local.ens.port",)),
    "store": ("local.store.enable", ("local.store.port",)),
    "imap": ("service.imap.enable", ("service.imap.port", "service.imap.sslport")),
    "pop": ("service.pop.enable", ("service.pop.port", "service.pop.sslport")),
    "cert": ("local.cert.enable", ("local.cert.port",)),
    "http": ("service.http.enable", ("service.http.port", "service.http.sslport")),
    "sched": ("local.sched.enable", ("local.sched.port",)),
    "dispatcher": ("local.imta.enable", ("service.smtp.port", "service.lmtp.port", "service.smtp.sslport")),
    "job_controller": ("local.imta.enable", ("local.job_controller.port",)),
    "mmp": ("local.mmp.enable", ("local.mmp.imapport", "local.mmp.popport")),
}
WORKERS = ("imap", "pop", "http")  # components with worker processes
MAX_WORKERS = 256  # the catalogue's range of service.<svc>.numprocesses
# one child each; dispatcher and job_controller share one switch (local.imta.enable): both or neither
SINGLES = ("ens", "store", "cert", "sched", "dispatcher", "job_controller", "mmp")
MAX_CHILDREN = len(WORKERS) * MAX_WORKERS + len(SINGLES)
PICK = 'shift "$MSGSRV_WORKER"; exec "$1" 1000000'  # worker w runs the w-th token's sleep


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Msgsrv(Adapter):
    name = "msgsrv"
    supports_health = True  # msprobe (run by imsched) reports a hang; the watcher restarts

    def _env(self) -> dict:
        env = dict(os.environ)
        env["MSGSRV_BASE"] = str(self.dir / "root")
        return env

    def _run(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / argv[0]), *argv[1:]], env=self._env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=600, check=check)

    def _plan(self, services) -> dict[str, str]:
        """component -> its command (workers: numprocesses) and the settings that go with it."""
        self.settings: dict[str, str] = {}
        kinds = {s.kind for s in services}
        if kinds == {"sleep"}:
            return self._plan_sleep(services)
        if len(services) != 1:
            raise RuntimeError("msgsrv adapter: one TCP or storm service per run")
        s = services[0]
        if s.kind == "tcp" and s.extra.get("health"):
            comp = "imap"
            self.settings.update({"service.imap.port": str(s.port), "service.imap.enablesslport": "no",
                                  "local.sched.enable": "yes", "local.probe.sched.enable": "no",
                                  "local.schedule.msprobe.enable": "yes"})
            if self.variant == "fast":
                self.settings.update({"local.schedule.msprobe": "1", "local.probe.imap.timeout": "1"})
            else:
                self.settings["local.schedule.msprobe"] = "5,15,25,35,45,55 * * * * lib/msprobe"
        else:
            comp = "cert"
            if s.kind == "tcp":
                self.settings["local.cert.port"] = str(s.port)
            else:
                self.settings["local.cert.ready"] = "started"
        return {comp: shlex.join(s.argv)}

    def _plan_sleep(self, services) -> dict[str, str]:
        n = len(services)
        if n > MAX_CHILDREN:
            raise RuntimeError(f"msgsrv: at most {MAX_CHILDREN} children (imap, pop, http with "
                               f"{MAX_WORKERS} workers each, one for each other component); asked for {n}")
        tokens = [s.token for s in services]
        plan, i = {}, 0
        for c in WORKERS:
            k = min(MAX_WORKERS, n - i)
            if k <= 0:
                break
            self.settings[f"service.{c}.numprocesses"] = str(k)
            argv = services[i].argv if k == 1 else ["/bin/sh", "-c", PICK, "sh", *tokens[i:i + k]]
            plan[c] = shlex.join(argv)
            i += k
        for c in SINGLES:
            if i >= n:
                break
            if c in ("dispatcher", "job_controller") and "dispatcher" not in plan and n - i < 2:
                continue  # room for one child only: mmp takes it
            plan[c] = shlex.join(services[i].argv)
            i += 1
        for c in plan:
            self.settings[f"local.{c}.ready"] = "started"
        return plan

    def start(self, services):
        self.services = list(services)
        plan = self._plan(self.services)
        settings = {enable: "no" for enable, _ in COMPONENTS.values()}
        settings.update({"local.schedule.msprobe.enable": "no", "local.autorestart": "yes",
                         "local.watcher.httpport": "0", "local.watcher.metricsport": "0",
                         "local.autorestart.timeout": "1" if self.variant == "fast" else "600"})
        ports = [p for c in plan for p in COMPONENTS[c][1]]
        if "sched" not in plan and self.settings.get("local.sched.enable") == "yes":
            ports += COMPONENTS["sched"][1]
        free = iter(free_ports(len(ports) + 1))
        settings["local.watcher.port"] = str(next(free))
        settings.update({p: str(next(free)) for p in ports})  # nothing of the suite's on a default port
        for c, command in plan.items():
            settings[COMPONENTS[c][0]] = "yes"
            settings[f"local.{c}.command"] = command
        settings.update(self.settings)
        f = self.write("settings.txt", "".join(f"{k}={v}\n" for k, v in settings.items()))
        t0 = time.monotonic()
        self._run("configutil", "-i", str(f), check=True)
        self.configutil_s = time.monotonic() - t0  # part of the harness's "start all"
        self.spawn([str(BIN / "watcher")], env=self._env())
        # like every peer's start(), return once the supervisor is launched; `start-msg` (which asks the
        # watcher to start the components) runs once the watcher answers, so it never launches a second
        # one. A storm's start fails (exit 1): the watcher retries within its budget.
        self.starter = threading.Thread(target=self._start_msg, args=(int(settings["local.watcher.port"]),),
                                        daemon=True)
        self.starter.start()

    def _start_msg(self, port: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.alive_roots():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.005)
        self.start_msg = self._run("start-msg")

    def stop(self):
        starter = getattr(self, "starter", None)
        if starter is not None:
            starter.join(120)
        self._run("stop-msg")

    def version(self):
        py = BIN / "python"
        return "msgsrv " + run_quiet([str(py), "-c", "import msgsrv; print(msgsrv.__version__)"])
