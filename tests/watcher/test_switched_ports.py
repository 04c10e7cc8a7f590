"""A multi-worker built-in server gets its listening sockets from the watcher (MSGSRV_LISTEN_FDS);
a port switched off by its parameter (`service.pop.enablesslport no`) is not bound, so a port held
by someone else for another use does not stop the server from starting."""

from __future__ import annotations

import socket

from tests.conftest import free_ports, wait_for


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def greets(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        return s.recv(128)


def test_a_switched_off_tls_port_is_not_bound_for_shared_workers(root, cli):
    watcher, pop, pops = free_ports(3)
    settings = {"local.watcher.port": watcher, "service.pop.port": pop, "service.pop.sslport": pops,
                "service.pop.numprocesses": 2, "service.pop.enablesslport": "no", "local.autorestart": "yes",
                "local.store.enable": "no", "service.imap.enable": "no", "service.http.enable": "no",
                "local.ens.enable": "no", "local.cert.enable": "no", "local.sched.enable": "no", "local.imta.enable": "no",
                "local.schedule.msprobe.enable": "no"}
    f = root.base / "settings.txt"
    f.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    assert cli("configutil", "-i", str(f)).returncode == 0
    other = socket.create_server(("127.0.0.1", pops))  # someone else's service on the unused port
    try:
        r = cli("start-msg", timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert wait_for(lambda: greets(pop)).startswith(b"+OK")
        other.close()
        assert refused(pops)  # and no worker took it up either
    finally:
        other.close()
        assert cli("stop-msg", timeout=120).returncode == 0
