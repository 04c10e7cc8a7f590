"""`service.pop.numprocesses` workers: four popd processes share one listening socket, created once
and inherited (MSGSRV_LISTEN_FDS, as the watcher does), and each serves clients; a port held by
anyone else is a start failure that names the holder (SPEC §4 "Ports are owned")."""

from __future__ import annotations

import re
import subprocess
import sys

from msgsrv.control import listeners
from tests.services.conftest import PASSWORD, USER, Conn, server_env, wait_accepting

GREETING = re.compile(rb"^\+OK popd\[(\d+)\] worker (\d) POP3 server ready$")


def test_four_pop_workers_share_one_inherited_socket_and_each_serves_clients(mailroot):
    port = mailroot.port("service.pop.port")
    sock = listeners.bind_listener("127.0.0.1", port, inheritable=True)
    procs = []
    try:
        for i in range(4):
            env = dict(server_env(mailroot.base, i), **{listeners.ENV: listeners.encode({("127.0.0.1", port):
                                                                                        sock.fileno()})})
            procs.append(subprocess.Popen([sys.executable, "-m", "msgsrv.services", "pop"], env=env,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          start_new_session=True, pass_fds=(sock.fileno(),)))
    finally:
        sock.close()  # the workers hold it now
    mailroot.procs.extend(procs)
    wait_accepting(port)
    pids = {p.pid for p in procs}
    served: dict[int, int] = {}  # pid -> worker index, for workers that completed a session
    for _ in range(400):  # whichever worker accepts first serves the connection
        with Conn(port) as c:
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


def test_a_second_instance_on_the_same_port_fails_naming_the_holder(mailroot):
    first = mailroot.spawn("pop")
    second = subprocess.Popen([sys.executable, "-m", "msgsrv.services", "pop"], env=server_env(mailroot.base, 0),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = second.communicate(timeout=30)
    port = mailroot.port("service.pop.port")
    assert second.returncode == 1
    assert err == (f"msgsrv-server: fatal: pop: unable to listen on 127.0.0.1:{port}: "
                   f"port {port} is in use by pid {first.pid} (popd)\n")
