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
