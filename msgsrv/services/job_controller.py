"""JobControllerService: the MTA job controller, `job_controller` (SPEC §3 "Built-in services").

A line protocol on `local.job_controller.port` (default 27442, loopback) reporting on the MTA
queue `data/queue/`:

    S: * OK job_controller ready
    C: PING            S: +OK PONG
    C: STATUS          S: +OK job_controller pid=<pid> worker=<n> uptime=<s> queue=<messages>
    C: QUEUE           S: +OK <messages> messages queued
    C: QUIT            S: +OK bye
"""

from __future__ import annotations

import os

from msgsrv.services.base import HealthService, HealthSession


class JobControllerSession(HealthSession):
    def queue_length(self) -> int:
        n = 0
        for _dirpath, _dirs, files in os.walk(self.service.root.queue_dir):
            n += sum(1 for f in files if not f.startswith("."))
        return n

    def status(self) -> str:
        return f"{super().status()} queue={self.queue_length()}"

    async def cmd_QUEUE(self, tag, rest: str) -> None:
        self.send(f"+OK {self.queue_length()} messages queued")


class JobControllerService(HealthService):
    component = "job_controller"
    port_parameter = "local.job_controller.port"
    session_class = JobControllerSession


SERVICE = JobControllerService
