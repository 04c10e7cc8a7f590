"""Small parts of the control side: refusal log limits, answers, listening-socket hand-over."""

import os
import socket
import subprocess
import sys

import pytest

from msgsrv.control import listeners
from msgsrv.control.protocol import Answer, ProtocolError, format_request, parse
from msgsrv.watcher.server import RefusalLog


def test_refusals_are_rate_limited_then_summed_up():
    lines = []
    log = RefusalLog(lines.append, limit=3, window=10.0)
    for i in range(50):
        log(f"refused {i}", now=100.0 + i * 0.01)
    assert lines == ["refused 0", "refused 1", "refused 2"]
    log("refused later", now=111.0)
    assert lines[3:] == ["47 more control connections refused in the last 10 s", "refused later"]


@pytest.mark.parametrize("text,outcome,rest", [
    ("restarting store imap pop http", "restarting", "store imap pop http"),
    ("limit store imap pop http: 2 restarts within 600 s", "limit", "store imap pop http: 2 restarts within 600 s"),
    ("", "restarting", ""),  # a watcher that answers a bare OK has queued it
])
def test_answers_of_hung_and_failed(text, outcome, rest):
    a = Answer.parse(text)
    assert (a.outcome, a.text) == (outcome, rest)


def test_requests_are_one_line_whatever_the_detail():
    assert format_request("HUNG", "imap", "12.5", "did not\nrespond") == b"HUNG imap 12.5 did not respond\n"
    assert parse(b"hung imap 1 x\n").verb == "HUNG"
    with pytest.raises(ProtocolError):
        parse(b"NOPE\n")


def test_inherited_sockets_are_named_and_taken_once(monkeypatch):
    sock = listeners.bind_listener("127.0.0.1", 0, inheritable=True)
    port = sock.getsockname()[1]
    monkeypatch.setenv(listeners.ENV, listeners.encode({("127.0.0.1", port): sock.fileno(), ("::1", 5): 99}))
    assert listeners.inherited() == {("127.0.0.1", port): sock.fileno(), ("::1", 5): 99}
    assert listeners.take("127.0.0.1", port + 1) is None
    got = listeners.take("127.0.0.1", port)
    assert got is not None and got.fileno() == sock.fileno()
    assert listeners.take("127.0.0.1", port) is None  # once
    got.detach()
    sock.close()


def test_a_held_port_names_its_holder():
    holder = subprocess.Popen([sys.executable, "-c", "import socket,sys,time\ns=socket.socket()\n"
                               "s.bind(('127.0.0.1',0));s.listen()\nprint(s.getsockname()[1],flush=True)\n"
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(holder.stdout.readline())
        with pytest.raises(listeners.PortInUse) as e:
            listeners.bind_listener("127.0.0.1", port)
        assert str(e.value) == f"port {port} is in use by pid {holder.pid} (python)" or \
            str(e.value).startswith(f"port {port} is in use by pid {holder.pid} (")
    finally:
        holder.kill()
        holder.wait()


def test_no_reuseport_on_our_listeners():
    sock = listeners.bind_listener("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        assert not os.get_inheritable(sock.fileno())
    finally:
        sock.close()
