"""Alarm mail reaches a real SMTP server (aiosmtpd) in the original's format, rate-limited."""

import asyncio
import email
import socket

import pytest
from probe_fakes import FakeServers, closed_port

from msgsrv.config.store import ConfigStore
from msgsrv.probe.runner import run_pass


class Inbox:
    def __init__(self):
        self.mails = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_sink():
    from aiosmtpd.smtp import SMTP

    inbox = Inbox()
    with FakeServers() as fs:
        async def make():
            server = await asyncio.get_running_loop().create_server(lambda: SMTP(inbox), "127.0.0.1", 0)
            fs.servers.append(server)
            return server.sockets[0].getsockname()[1]

        inbox.port = asyncio.run_coroutine_threadsafe(make(), fs.loop).result(5)
        yield inbox


def configure(root, **sets):
    ConfigStore(root.config_file).update({k: str(v) for k, v in sets.items()})


def test_serverresponse_alarm_mail_format_and_rate_limit(root, fakes, smtp_sink):
    port = fakes.start("slow", 0.2)
    configure(root, **{"local.store.port": port, "alarm.serverresponse.msgalarmthreshold": 0,
                       "alarm.msgalarmnoticeport": smtp_sink.port, "alarm.msgalarmnoticehost": "127.0.0.1",
                       "alarm.msgalarmnoticesender": "probe@example.org",
                       "alarm.msgalarmnoticercpt": "admin@example.org"})
    asyncio.run(run_pass(root, ["store"]))
    asyncio.run(run_pass(root, ["store"]))
    assert len(smtp_sink.mails) == 1  # the second pass is inside the 24 h warning interval
    sender, rcpts, content = smtp_sink.mails[0]
    assert sender == "probe@example.org" and rcpts == ["admin@example.org"]
    msg = email.message_from_bytes(content)
    instance = f"store_{socket.gethostname()}_{port}"
    assert msg["Subject"].startswith(f'ALARM: server response time in seconds of "{instance}" is 0.2')
    assert msg["From"] == "probe@example.org" and msg["To"] == "admin@example.org"
    body = msg.get_payload().splitlines()
    assert body[0] == f"Server instance: {root.base}"
    assert body[1:4] == ["Alarmid: serverresponse", f"Instance: {instance}",
                         "Description: server response time in seconds"]
    assert body[4].startswith("Current measured value (") and body[4].split("): ")[1].startswith("0.2")
    assert body[5].startswith("Lowest recorded value: ") and body[6].startswith("Highest recorded value: ")
    assert body[7:] == ["Monitoring interval: 600 seconds", "Alarm condition is when over threshold of 0",
                        "Number of times over threshold: 1"]
    log = root.default_log.read_text()
    assert "alarm serverresponse:" in log and "alarm mail sent to admin@example.org" in log
    assert "not mailed (warning interval)" in log


def test_diskavail_alarm_mail(root, smtp_sink):
    off = {n: "no" for n in ("local.ens.enable", "local.store.enable", "service.imap.enable", "service.pop.enable",
                             "service.http.enable", "local.sched.enable", "local.imta.enable", "local.cert.enable")}
    configure(root, **off, **{"alarm.diskavail.msgalarmthreshold": 100, "alarm.msgalarmnoticehost": "127.0.0.1",
                              "alarm.msgalarmnoticeport": smtp_sink.port})
    asyncio.run(run_pass(root))
    subjects = sorted(email.message_from_bytes(m[2])["Subject"] for m in smtp_sink.mails)
    assert len(subjects) == 2
    assert subjects[0].startswith('ALARM: percentage mail partition diskspace available of "queue" is ')
    assert subjects[1].startswith('ALARM: percentage mail partition diskspace available of "store" is ')
    body = email.message_from_bytes(smtp_sink.mails[0][2]).get_payload()
    assert "Alarm condition is when under threshold of 100" in body
    assert "Monitoring interval: 3600 seconds" in body


def test_failed_send_is_logged_never_fatal(root, fakes):
    configure(root, **{"local.store.port": fakes.start("line"), "alarm.serverresponse.msgalarmthreshold": 0,
                       "alarm.msgalarmnoticeport": closed_port(), "alarm.msgalarmnoticehost": "127.0.0.1"})
    report = asyncio.run(run_pass(root, ["store"]))
    assert report.healthy
    assert any("unable to send alarm mail to 127.0.0.1:" in e for e in report.errors)


# -- issue 11: the defaults deliver on a fresh machine; msprobe --test-alarm --------------------
def test_default_target_is_the_suites_own_smtp_port_and_postmaster(root, smtp_sink, cli):
    configure(root, **{"service.smtp.port": smtp_sink.port})  # the only setting: where our SMTP listens
    r = cli("msprobe", "--test-alarm")
    assert (r.returncode, r.stdout, r.stderr) == (
        0, f"test alarm mail sent to postmaster@localhost through 127.0.0.1:{smtp_sink.port}\n", "")
    [(sender, rcpts, content)] = smtp_sink.mails
    assert (sender, rcpts) == ("postmaster@localhost", ["postmaster@localhost"])
    msg = email.message_from_bytes(content)
    assert msg["Subject"] == 'ALARM: test alarm sent by msprobe --test-alarm of "msprobe" is 1'
    assert "Alarmid: test" in msg.get_payload()
    assert not (root.data_dir / "alarms.json").exists()  # a test mail is neither counted nor rate-limited
    assert cli("msprobe", "--test-alarm", "-q").stdout == "" and len(smtp_sink.mails) == 2


def test_test_alarm_that_cannot_be_sent_is_one_line_exit_1(root, cli):
    port = closed_port()
    configure(root, **{"service.smtp.port": port})
    r = cli("msprobe", "--test-alarm")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", f"msprobe: unable to send alarm mail to 127.0.0.1:{port}: connection refused\n")


def test_test_alarm_reaches_the_builtin_dispatcher_and_the_store(root, cli):
    """Through the real SMTP server of the suite into postmaster's mailbox. (The dispatcher's own
    rule that postmaster is always a valid recipient is the SMTP work's; here the user exists.)"""
    import os
    import subprocess

    from tests.conftest import command_path, free_ports, wait_for

    smtp, lmtp = free_ports(2)
    configure(root, **{"service.smtp.port": smtp, "service.lmtp.port": lmtp, "local.ens.enable": "no"})
    assert cli("mboxutil", "-a", "postmaster", input="pw\n").returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSRV_")}
    env["MSGSRV_BASE"] = str(root.base)
    server = subprocess.Popen([command_path("msgsrv-server"), "dispatcher"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def accepts():
            try:
                socket.create_connection(("127.0.0.1", smtp), timeout=0.5).close()
                return True
            except OSError:
                return server.poll() is not None
        wait_for(accepts, timeout=20)
        assert server.poll() is None
        r = cli("msprobe", "--test-alarm")
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        mails = [p for p in root.store_dir.rglob("*") if p.is_file() and b"msprobe --test-alarm" in p.read_bytes()]
        assert len(mails) == 1 and "postmaster" in str(mails[0].relative_to(root.store_dir))
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize("damage", ["list", "shape", "text"])
def test_a_damaged_alarm_state_is_counted_afresh_and_the_mail_still_goes(root, smtp_sink, damage):
    """data/alarms.json written over (valid JSON of the wrong shape, or not JSON) between two
    passes: the counts start again, so the alarms' mail goes again (the rate limit's memory is
    gone with the file); the pass never fails on it."""
    import json

    off = {n: "no" for n in ("local.ens.enable", "local.store.enable", "service.imap.enable", "service.pop.enable",
                             "service.http.enable", "local.sched.enable", "local.imta.enable", "local.cert.enable")}
    configure(root, **off, **{"alarm.diskavail.msgalarmthreshold": 100, "alarm.msgalarmnoticehost": "127.0.0.1",
                              "alarm.msgalarmnoticeport": smtp_sink.port})
    asyncio.run(run_pass(root))
    assert len(smtp_sink.mails) == 2
    path = root.data_dir / "alarms.json"
    keys = sorted(json.loads(path.read_text()))
    path.write_text({"list": "[1, 2]", "text": "{not json",
                     "shape": json.dumps({keys[0]: 7, keys[1]: {"times_over": "x", "last_sent": "y"}})}[damage])
    asyncio.run(run_pass(root))
    assert len(smtp_sink.mails) == 4
    state = json.loads(path.read_text())
    assert sorted(state) == keys and all(state[k]["times_over"] == 1 for k in keys), state
