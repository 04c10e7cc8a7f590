"""`service.pop.numprocesses` workers: four popd processes share one port (SO_REUSEPORT) and
each serves clients."""

from __future__ import annotations

import re

from tests.services.conftest import PASSWORD, USER, Conn, wait_accepting

GREETING = re.compile(rb"^\+OK popd\[(\d+)\] worker (\d) POP3 server ready$")


def test_four_pop_workers_share_the_port_and_each_serves_clients(mailroot):
    procs = [mailroot.spawn("pop", worker=i, wait=False) for i in range(4)]
    wait_accepting(mailroot.port("service.pop.port"))
    pids = {p.pid for p in procs}
    served: dict[int, int] = {}  # pid -> worker index, for workers that completed a session
    for _ in range(400):  # the kernel hashes each new connection to one of the sockets
        with Conn(mailroot.port("service.pop.port")) as c:
            m = GREETING.match(c.line())
            assert m, "unexpected greeting"
            pid, worker = int(m.group(1)), int(m.group(2))
            if pid in served:
                continue
            assert c.ask(f"USER {USER}").startswith(b"+OK")
            assert c.ask(f"PASS {PASSWORD}").startswith(b"+OK")
            assert c.ask("STAT").startswith(b"+OK 0 0")
            assert c.ask("QUIT").startswith(b"+OK")
            served[pid] = worker
        if len(served) == 4:
            break
    assert set(served) == pids
    assert sorted(served.values()) == [0, 1, 2, 3]
