"""mshttpd on h11 (issue 13 "HTTP", issue 14): bodies read or refused, no smuggling, Host required,
conflicting lengths refused, absolute-form, 501/405, the status page without user data, /mail
behind HTTP Basic, HTTPS, and the built-in service contract (fault switch, SIGTERM drain)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import select
import signal
import socket
import ssl
import time

import pytest

from msgsrv import tls
from msgsrv.config.store import ConfigStore
from tests.services.conftest import PASSWORD, USER


def exchange(port: int, data: bytes, timeout: float = 10.0) -> list[bytes]:
    """Send DATA on one connection; the status lines of every response, read until the server
    closes the connection (each test's last request asks it to, or is refused)."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        while chunk := s.recv(65536):
            out += chunk
    return re.findall(rb"HTTP/1\.[01] \d{3}", out)  # the bodies here never contain one


def status(line: bytes) -> int:
    return int(line[-3:])


def answering(port: int, timeout: float = 10.0) -> None:
    """Wait until the server answers a request (aiohttp is imported after the ports are bound)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", "/health")
    assert c.getresponse().status == 200
    c.close()


@pytest.fixture
def web(mailroot):
    mailroot.spawn("http")
    answering(mailroot.port("service.http.port"))
    return mailroot


def test_get_with_a_body_does_not_run_into_the_next_request(web):
    port = web.port("service.http.port")
    smuggled = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    lines = exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
                     + smuggled + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [status(ln) for ln in lines] == [200, 200]  # the body was read as a body, not as a request


def test_chunked_body_is_read_and_the_connection_stays_usable(web):
    lines = exchange(web.port("service.http.port"),
                     b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                     b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [status(ln) for ln in lines] == [200, 404]


@pytest.mark.parametrize("body", [
    b"Content-Length: 100000\r\n\r\n" + b"x" * 100000,
    b"Transfer-Encoding: chunked\r\n\r\n" + (b"8000\r\n" + b"x" * 0x8000 + b"\r\n") * 3 + b"0\r\n\r\n",
])
def test_an_oversized_body_is_refused_with_413_and_the_connection_closed(web, body):
    lines = exchange(web.port("service.http.port"), b"POST / HTTP/1.1\r\nHost: x\r\n" + body
                     + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [status(ln) for ln in lines] == [413]


@pytest.mark.parametrize("request_head,why", [
    (b"GET / HTTP/1.1\r\n\r\n", "Host"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "Host"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "Content-Length"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n folded: y\r\n\r\n", "Host"),  # unfolded: "x folded: y" is no host
    (b"\xff\xfe garbage\r\n\r\n", None),
])
def test_malformed_requests_get_400_and_are_logged(web, request_head, why):
    lines = exchange(web.port("service.http.port"), request_head + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [status(ln) for ln in lines] == [400]  # and nothing after it is served
    if why:
        assert "protocol error from 127.0.0.1: 400 " in web.root.default_log.read_text()
        assert why in web.root.default_log.read_text()


@pytest.mark.parametrize("request_head,code,why", [
    (b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request target over 8190 octets"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n", 431, "header field x-a over 8190"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(101)) + b"\r\n", 431,
     "more than 100 header fields"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: " % i + b"b" * 8000 + b"\r\n" for i in range(20))
     + b"\r\n", 431, "Receive buffer too long"),  # a head over 64 KiB
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Transfer-Encoding"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     501, "multiple Transfer-Encoding"),
])
def test_limits_are_refused_with_their_status_and_the_connection_closed(web, request_head, code, why):
    lines = exchange(web.port("service.http.port"), request_head + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [status(ln) for ln in lines] == [code]
    assert f"protocol error from 127.0.0.1: {code} " in web.root.default_log.read_text()
    assert why in web.root.default_log.read_text()


def test_a_folded_header_line_is_unfolded_and_pipelined_requests_are_answered_in_order(web):
    """RFC 9112 §5.2: a server may replace obs-fold by a space (h11 does) instead of refusing it."""
    lines = exchange(web.port("service.http.port"),
                     b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n b\r\n\r\n"
                     b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [status(ln) for ln in lines] == [200, 404, 200, 200]


def test_a_client_that_goes_away_mid_request_is_not_a_protocol_error(web):
    port = web.port("service.http.port")
    for partial in (b"GET /health HTTP/1.1\r\nHo", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(partial)
    answering(port)
    assert "protocol error" not in web.root.default_log.read_text()


def test_expect_100_continue_gets_its_interim_answer(web):
    """curl sends `Expect: 100-continue` before a body over 1 KiB and waits a second for it."""
    with socket.create_connection(("127.0.0.1", web.port("service.http.port")), timeout=5) as s:
        s.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 ")
        s.sendall(b"data")
        assert b"HTTP/1.1 405 " in s.recv(1000)


def test_http_1_0_without_host_and_absolute_form_are_served(web):
    port = web.port("service.http.port")
    assert [status(ln) for ln in exchange(port, b"GET /health HTTP/1.0\r\n\r\n")] == [200]  # 1.0: closes
    lines = exchange(port, b"GET http://mail.example.org/health HTTP/1.1\r\nHost: mail.example.org\r\n"
                           b"Connection: close\r\n\r\n")
    assert [status(ln) for ln in lines] == [200]


def test_unknown_method_is_501_known_unserved_method_405(web):
    port = web.port("service.http.port")
    lines = exchange(port, b"FROBNICATE / HTTP/1.1\r\nHost: x\r\n\r\nDELETE / HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [status(ln) for ln in lines] == [501, 405, 200]
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("PUT", "/", body=b"x")
    r = c.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"
    c.close()


def test_head_has_the_headers_and_no_body(web):
    c = http.client.HTTPConnection("127.0.0.1", web.port("service.http.port"), timeout=10)
    c.request("HEAD", "/health")
    r = c.getresponse()
    assert r.status == 200 and int(r.getheader("Content-Length")) > 0 and r.read() == b""
    c.request("GET", "/health")  # the same connection: nothing left over from the HEAD
    assert json.loads(c.getresponse().read())["status"] == "ok"
    c.close()


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_status_page_has_no_user_data_and_mail_needs_a_login(web):
    from msgsrv.store.mailbox import Store

    Store(web.root).deliver(USER, b"Subject: secret\r\n\r\nx\r\n")
    c = http.client.HTTPConnection("127.0.0.1", web.port("service.http.port"), timeout=10)
    c.request("GET", "/")
    page = c.getresponse().read()
    assert b"mshttpd" in page and USER.encode() not in page and b"INBOX" not in page
    c.request("GET", "/mail")
    r = c.getresponse()
    assert r.status == 401 and r.getheader("WWW-Authenticate").startswith("Basic realm=")
    assert USER.encode() not in r.read()
    c.request("GET", "/mail", headers=basic(USER, "wrong"))
    r = c.getresponse()
    assert r.status == 401 and USER.encode() not in r.read()
    c.request("GET", "/mail", headers=basic(USER, PASSWORD))
    r = c.getresponse()
    body = r.read()
    assert r.status == 200 and b"mailbox INBOX" in body and b"1 messages" in body
    assert r.getheader("Cache-Control") == "no-store"
    c.close()
    log = web.root.default_log.read_text()
    assert "login failed for 'alice' from 127.0.0.1" in log and "wrong" not in log


def test_https_port_serves_with_the_suite_certificate(web):
    ctx = tls.client_context(web.root)
    c = http.client.HTTPSConnection("127.0.0.1", web.port("service.http.sslport"), timeout=10, context=ctx)
    c.request("GET", "/health")
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read())["server"] == "mshttpd"
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    c.close()
    with pytest.raises(ssl.SSLCertVerificationError):  # not trusted without the suite's certificate
        u = http.client.HTTPSConnection("127.0.0.1", web.port("service.http.sslport"), timeout=10,
                                        context=ssl.create_default_context())
        u.request("GET", "/health")


def test_requiretls_refuses_a_cleartext_login_but_not_over_https(mailroot):
    ConfigStore(mailroot.root.config_file).update({"local.requiretls": "yes"})
    mailroot.spawn("http")
    answering(mailroot.port("service.http.port"))
    c = http.client.HTTPConnection("127.0.0.1", mailroot.port("service.http.port"), timeout=10)
    c.request("GET", "/mail", headers=basic(USER, PASSWORD))
    r = c.getresponse()
    assert r.status == 403 and b"HTTPS" in r.read()
    s = http.client.HTTPSConnection("127.0.0.1", mailroot.port("service.http.sslport"), timeout=10,
                                    context=tls.client_context(mailroot.root))
    s.request("GET", "/mail", headers=basic(USER, PASSWORD))
    assert s.getresponse().status == 200


def test_fault_switch_hang_and_slow_apply_to_http_and_https(web):
    port, sport = web.port("service.http.port"), web.port("service.http.sslport")
    web.fault("http", "hang")
    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    held.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    ready, _, _ = select.select([held], [], [], 0.5)
    assert not ready  # accepted, never answered
    web.fault("http", "slow 0.5")
    t0 = time.monotonic()
    s = http.client.HTTPSConnection("127.0.0.1", sport, timeout=10, context=tls.client_context(web.root))
    s.request("GET", "/health")
    assert s.getresponse().status == 200
    assert 0.5 <= time.monotonic() - t0 < 3
    web.fault("http", None)
    assert [status(ln) for ln in exchange(port, b"GET /health HTTP/1.0\r\n\r\n")] == [200]
    held.close()


def test_sigterm_with_a_request_in_flight_and_idle_connections_exits_0_within_2s(web):
    proc = web.procs[0]
    port = web.port("service.http.port")
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    idle.request("GET", "/health")
    idle.getresponse().read()
    web.fault("http", "hang")
    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    time.sleep(0.1)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    assert time.monotonic() - t0 < 2.0
    assert held.recv(100) == b""  # closed, not left hanging
    held.close()
    idle.close()
    assert "mshttpd process" in web.root.default_log.read_text().splitlines()[-1]
