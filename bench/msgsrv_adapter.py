"""msgsrv as one more peer of ../shared/bench (the supervisor harness).

    BENCH_ADAPTERS=$PWD/bench/msgsrv_adapter.py BENCH_RESULTS=/tmp/bench-results \\
        /work/venv/bin/python ../shared/bench/run.py --test crash --peers msgsrv,s6,supervisord

Each harness service becomes one msgsrv component whose program is the service
(`local.<component>.command`), on its own restart unit, with local.autorestart = yes. The watcher
runs in the foreground as the adapter's root; `start-msg` asks it to start the components.
The restart window is 1 s (and msprobe scheduling off, as the cross-field rule then requires) so
that the harness's repeated kills, 1.5 s or more apart, are never throttled by the restart budget;
the storm test shows the budget at its default instead (variant "default": window 600 s).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from adapters.base import Adapter

BIN = Path(os.environ.get("MSGSRV_BIN", Path(sys.executable).parent))
# components with their own restart unit and a port parameter, in start order
SLOTS = (("cert", "local.cert.port"), ("sched", "local.sched.port"),
         ("job_controller", "local.job_controller.port"), ("mmp", "local.mmp.imapport"))
OFF = ("local.ens.enable", "local.store.enable", "service.imap.enable", "service.pop.enable",
       "service.http.enable", "local.cert.enable", "local.sched.enable", "local.imta.enable",
       "local.mmp.enable")


class Msgsrv(Adapter):
    name = "msgsrv"
    supports_health = False

    def _env(self) -> dict:
        env = dict(os.environ)
        env["MSGSRV_BASE"] = str(self.dir / "root")
        return env

    def _configutil(self, settings: dict[str, str]) -> None:
        f = self.write("settings.txt", "".join(f"{k}={v}\n" for k, v in settings.items()))
        subprocess.run([str(BIN / "configutil"), "-i", str(f)], env=self._env(), check=True)

    def start(self, services):
        if len(services) > len(SLOTS):
            raise RuntimeError(f"msgsrv supervises named components; at most {len(SLOTS)} services here")
        self.services = list(services)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            free = sock.getsockname()[1]
        settings = {k: "no" for k in OFF}
        settings.update({"local.autorestart": "yes", "local.schedule.msprobe.enable": "no",
                         "local.watcher.port": str(free), "local.watcher.httpport": "0",
                         "local.autorestart.timeout": "1" if self.variant == "fast" else "600"})
        for (comp, port_param), s in zip(SLOTS, services):
            settings[f"local.{comp}.enable"] = "yes"
            settings[f"local.{comp}.command"] = shlex.join(s.argv)
            settings[port_param] = str(s.port or 1)
        self._configutil(settings)
        self.spawn([str(BIN / "watcher")], env=self._env())
        subprocess.run([str(BIN / "start-msg")], env=self._env(), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)

    def stop(self):
        subprocess.run([str(BIN / "stop-msg")], env=self._env(), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)

    def version(self):
        from msgsrv import __version__

        return f"msgsrv {__version__}"
