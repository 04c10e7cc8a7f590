"""The seed scenario with the built-in servers: pop with 4 workers, autorestart yes; kill -9
imapd -> the watcher log shows the seed's sequence with new pids, and every service answers its
protocol again (imaplib, poplib, smtplib, http.client)."""

from __future__ import annotations

import http.client
import imaplib
import json
import os
import poplib
import re
import signal
import smtplib
import time

from msgsrv import messages as M
from msgsrv.store.users import Users
from tests.conftest import free_ports
from tests.watcher.conftest import seed_restart_sequence, wait_for

PARAMS = ("local.watcher.port", "local.watcher.httpport", "local.store.port", "service.imap.port", "service.pop.port", "service.http.port",
          "service.smtp.port", "service.lmtp.port", "local.ens.port", "local.job_controller.port",
          "local.cert.port", "local.sched.port", "service.imap.sslport", "service.pop.sslport",
          "service.http.sslport", "service.smtp.sslport")
STORE = ("store", "imap", "pop", "http")


def _pids(root, c):
    try:
        return [d["pid"] for d in json.loads(root.pid_file(c).read_text())]
    except (OSError, ValueError):
        return []


def _lines(root):
    return [ln.split("] ", 1)[1] if ln.startswith("[") else ln for ln in root.watcher_log.read_text().splitlines()]


def test_seed_scenario_with_builtin_servers(root, cli):
    ports = dict(zip(PARAMS, free_ports(len(PARAMS))))
    settings = {**{k: str(v) for k, v in ports.items()}, "local.autorestart": "yes",
                "service.pop.numprocesses": "4", "local.schedule.msprobe.enable": "no"}
    f = root.base / "settings.txt"
    f.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    assert cli("configutil", "-i", str(f)).returncode == 0
    Users(root).add("alice", "pw-alice")
    try:
        r = cli("start-msg")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "checking store server status" in r.stdout and r.stdout.count("Starting ") == 9
        with smtplib.SMTP("127.0.0.1", ports["service.smtp.port"], timeout=10) as s:
            s.sendmail("bob@example.org", ["alice"], b"Subject: before\r\n\r\nfirst message\r\n")
        old = {c: _pids(root, c) for c in STORE}
        assert len(old["pop"]) == 4
        t0 = time.monotonic()
        os.kill(old["imap"][0], signal.SIGKILL)
        wait_for(lambda: root.watcher_log.read_text().count("Starting http server") == 2, timeout=20)
        restart_time = time.monotonic() - t0
        lines = _lines(root)
        i = lines.index(M.WATCHED_EXITED.format(daemon="imapd", pid=old["imap"][0]))
        expected = seed_restart_sequence(old, store_check=True)
        for pattern, line in zip(expected, lines[i + 1:i + 1 + len(expected)]):
            assert re.fullmatch(pattern, line), (pattern, line)
        for c in STORE:
            new = _pids(root, c)
            assert new and not set(new) & set(old[c]), c
        assert restart_time < 10
        # every service answers its protocol again, and the mail survived
        with smtplib.LMTP("127.0.0.1", ports["service.lmtp.port"], timeout=10) as s:
            s.sendmail("carol@example.org", ["alice"], b"Subject: after\r\n\r\nsecond message\r\n")
        im = imaplib.IMAP4("127.0.0.1", ports["service.imap.port"], timeout=10)
        im.login("alice", "pw-alice")
        typ, data = im.select("INBOX")
        assert typ == "OK" and int(data[0]) == 2
        im.logout()
        p = poplib.POP3("127.0.0.1", ports["service.pop.port"], timeout=10)
        p.user("alice")
        p.pass_("pw-alice")
        assert p.stat()[0] == 2
        p.quit()
        h = http.client.HTTPConnection("127.0.0.1", ports["service.http.port"], timeout=10)
        h.request("GET", "/health")
        assert h.getresponse().status == 200
        r = cli("msprobe", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        cli("stop-msg", "-f")
