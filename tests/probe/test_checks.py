"""Each protocol probe against a real server on 127.0.0.1."""

import asyncio
import time

import pytest
from probe_fakes import closed_port

from msgsrv.probe.checks import probe


@pytest.mark.parametrize("service,kind", [
    ("imap", "imap"), ("pop", "pop"), ("http", "http"), ("smtp", "smtp"), ("lmtp", "lmtp"),
    ("store", "line"), ("ens", "line"), ("job_controller", "line"), ("cert", "line"), ("sched", "line"),
    ("mmp", "line"),
])
def test_healthy_server_answers_ok(fakes, service, kind):
    port = fakes.start(kind)
    r = asyncio.run(probe(service, port, timeout=2))
    assert r.ok, r.detail
    assert r.service == service and r.port == port
    assert 0 < r.elapsed < 1


def test_hung_server_times_out_after_timeout(fakes):
    port = fakes.start("hang")
    r = asyncio.run(probe("imap", port, timeout=0.3))
    assert not r.ok and r.timed_out
    assert 0.3 <= r.elapsed < 0.6
    assert r.detail == "no response within 0.3s"


def test_refused_connection_is_down_not_hung():
    r = asyncio.run(probe("pop", closed_port(), timeout=2))
    assert not r.ok and not r.timed_out
    assert r.detail == "connection refused"


def test_wrong_greeting_is_a_failure(fakes):
    port = fakes.start("bad")
    r = asyncio.run(probe("imap", port, timeout=2))
    assert not r.ok and not r.timed_out
    assert r.detail.startswith("unexpected IMAP greeting")


def test_line_protocol_error_greeting_fails(fakes):
    r = asyncio.run(probe("ens", fakes.start("bad"), timeout=2))
    assert not r.ok and "greeting" in r.detail


def test_imap_server_on_pop_probe_fails(fakes):
    r = asyncio.run(probe("pop", fakes.start("imap"), timeout=2))
    assert not r.ok and not r.timed_out
    assert r.detail.startswith("unexpected POP greeting: '* OK"), r.detail


def test_slow_server_measured(fakes):
    port = fakes.start("slow", 0.25)
    r = asyncio.run(probe("store", port, timeout=2))
    assert r.ok and 0.25 <= r.elapsed < 0.8


def test_real_aiosmtpd_smtp_and_lmtp():
    from aiosmtpd.lmtp import LMTP
    from aiosmtpd.smtp import SMTP

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    async def go():
        loop = asyncio.get_running_loop()
        s1 = await loop.create_server(lambda: SMTP(Sink()), "127.0.0.1", 0)
        s2 = await loop.create_server(lambda: LMTP(Sink()), "127.0.0.1", 0)
        try:
            return await asyncio.gather(probe("smtp", s1.sockets[0].getsockname()[1], 2),
                                        probe("lmtp", s2.sockets[0].getsockname()[1], 2))
        finally:
            s1.close()
            s2.close()

    a, b = asyncio.run(go())
    assert a.ok, a.detail
    assert b.ok, b.detail


def test_probes_run_concurrently_three_hung_cost_one_timeout(fakes):
    from msgsrv.probe.runner import Target, probe_all

    hung = [fakes.start("hang") for _ in range(3)]
    good = fakes.start("imap")
    items = [Target("store", "store", p, 5, 0.5) for p in hung] + [Target("imap", "imap", good, 5, 0.5)]
    t0 = time.monotonic()
    results = asyncio.run(probe_all(items))
    took = time.monotonic() - t0
    assert [r.ok for r in results] == [False, False, False, True]
    assert took < 0.5 + 0.3


# -- implicit-TLS ports (issue 13): the clock includes the handshake --------------------------------
@pytest.fixture(scope="module")
def tls_servers(tmp_path_factory):
    """Real imap, pop, http and dispatcher processes with their TLS ports, in one server root."""
    from tests.services.conftest import make_root

    m = make_root(tmp_path_factory.mktemp("tlsprobe") / "root")
    for component in ("imap", "pop", "http", "dispatcher"):
        m.spawn(component)
    yield m
    m.stop_all()


@pytest.mark.parametrize("service,parameter", [
    ("imaps", "service.imap.sslport"), ("pops", "service.pop.sslport"), ("https", "service.http.sslport"),
    ("smtps", "service.smtp.sslport")])
def test_tls_probe_speaks_the_protocol_over_tls(tls_servers, service, parameter):
    from msgsrv import tls

    r = asyncio.run(probe(service, tls_servers.port(parameter), timeout=10, tls=tls.client_context(tls_servers.root)))
    assert r.ok, r.detail
    assert r.detail.startswith({"imaps": "* OK", "pops": "+OK", "https": "HTTP/1.1 200", "smtps": "220 "}[service])


def test_tls_probe_time_includes_the_handshake(tls_servers):
    """The probe's time runs from the connect, so a slow handshake counts. A real TLS server (the
    suite's certificate) that holds its side of the handshake for HOLD seconds, then speaks POP:
    the probe is ok and its time is at least HOLD. (Comparing the time of a TLS probe with a plain
    one instead was a race on a loaded machine.)"""
    import socket
    import ssl
    import threading

    from msgsrv import tls

    hold = 0.3
    crt, key = tls.default_paths(tls_servers.root)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(crt), str(key))
    ls = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = ls.accept()
        time.sleep(hold)  # the client's ClientHello waits unanswered
        with server_ctx.wrap_socket(conn, server_side=True) as s:
            s.sendall(b"+OK ready\r\n")
            with s.makefile("rb") as f:
                while (line := f.readline()):
                    s.sendall(b"+OK\r\n")
                    if line.strip().upper() == b"QUIT":
                        break

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        r = asyncio.run(probe("pops", ls.getsockname()[1], 10, tls=tls.client_context(tls_servers.root)))
    finally:
        t.join(5)
        ls.close()
    assert r.ok, r.detail
    assert r.elapsed >= hold, r.elapsed


def test_tls_probe_with_an_untrusted_certificate_is_down(tls_servers):
    import ssl

    r = asyncio.run(probe("pops", tls_servers.port("service.pop.sslport"), 5, tls=ssl.create_default_context()))
    assert not r.ok and not r.timed_out
    assert r.detail.startswith("TLS handshake failed: ") and "certificate" in r.detail


def test_tls_port_that_never_handshakes_is_hung(fakes):
    import ssl

    r = asyncio.run(probe("pops", fakes.start("hang"), 0.3, tls=ssl.create_default_context()))
    assert not r.ok and r.timed_out and r.detail == "no response within 0.3s"


def test_tls_server_hung_after_the_handshake_is_hung(tls_servers):
    from msgsrv import tls

    tls_servers.fault("pop", "hang")
    try:
        r = asyncio.run(probe("pops", tls_servers.port("service.pop.sslport"), 0.5,
                              tls=tls.client_context(tls_servers.root)))
    finally:
        tls_servers.fault("pop", None)
    assert not r.ok and r.timed_out


def test_a_pass_probes_the_tls_ports_it_is_configured_for(tls_servers):
    from msgsrv.config.store import ConfigStore
    from msgsrv.probe.runner import run_pass, targets

    store = ConfigStore(tls_servers.root.config_file)
    report = asyncio.run(run_pass(tls_servers.root, ["pop", "pops", "https", "smtps"]))
    assert [(o.target.service, o.target.tls, o.status.value) for o in report.outcomes] == [
        ("pop", False, "OK"), ("pops", True, "OK"), ("https", True, "OK"), ("smtps", True, "OK")]
    assert "msprobe Info: pops server response time " in tls_servers.root.default_log.read_text()
    store.update({"service.smtp.enablesslport": "no"})
    try:
        names = [t.service for t in targets(ConfigStore(tls_servers.root.config_file))]
    finally:
        store.update(deletes=["service.smtp.enablesslport"])
    assert "smtps" not in names and "pops" in names and "https" in names
