"""The `sched` component: the scheduler daemon `imsched` (SPEC §3 "Built-in services").

`msgsrv-server sched` runs `msgsrv.sched.imsched.serve(root)`: the real scheduler, with its own
health listener on `local.sched.port`, registration and fault switch, speaking the health lines:

    S: * OK imsched ready
    C: PING            S: +OK PONG
    C: STATUS          S: +OK imsched pid=<pid> worker=<n> uptime=<s>
    C: QUIT            S: +OK bye
"""

from __future__ import annotations

from msgsrv.services.base import HealthService, set_process_name


class SchedHealthService(HealthService):
    component = "sched"
    port_parameter = "local.sched.port"

    def main(self) -> int:
        import asyncio

        from msgsrv.errors import MsgsrvError
        from msgsrv.sched.imsched import serve

        set_process_name(self.daemon)
        try:
            return int(asyncio.run(serve(self.root)) or 0)
        except MsgsrvError as e:
            import sys

            self.log(str(e), "Error")
            print(f"msgsrv-server: fatal: sched: {e}", file=sys.stderr)
            return 1


SERVICE = SchedHealthService
