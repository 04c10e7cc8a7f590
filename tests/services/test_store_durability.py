"""Nothing accepted is lost (issue 13 "The store is real Maildir"): a kill -9 of the dispatcher in
the middle of SMTP deliveries, or of imapd in the middle of APPENDs, leaves every message that was
answered 250 / OK [APPENDUID] in the store, whole, under the UID that was given out."""

from __future__ import annotations

import imaplib
import os
import re
import signal
import smtplib
import threading
import time

import pytest

from msgsrv.store.mailbox import Store
from tests.services.conftest import PASSWORD, USER, make_root

BODY = (b"x" * 76 + b"\r\n") * 260  # 20 KB in lines SMTP accepts


@pytest.fixture
def mroot(tmp_path):
    m = make_root(tmp_path / "root")
    yield m
    m.stop_all()


def kill_later(proc, seconds: float) -> threading.Timer:
    t = threading.Timer(seconds, lambda: os.killpg(proc.pid, signal.SIGKILL))
    t.start()
    return t


def test_kill_9_of_the_dispatcher_mid_delivery_loses_no_accepted_message(mroot):
    accepted: list[bytes] = []
    for round_ in range(3):
        proc = mroot.spawn("dispatcher")
        kill_later(proc, 0.4 + 0.1 * round_)
        try:
            with smtplib.SMTP("127.0.0.1", mroot.port("service.smtp.port"), timeout=10) as s:
                for i in range(100_000):
                    body = b"Subject: r%d-%d\r\n\r\n" % (round_, i) + BODY
                    s.sendmail("bob@example.org", [USER], body)
                    accepted.append(b"Subject: r%d-%d\r\n" % (round_, i))
        except (smtplib.SMTPException, OSError):
            pass  # killed under us
        proc.wait(5)
    assert len(accepted) > 3
    store = Store(mroot.root)
    box = store.mailbox(USER)
    stored = [box.read(m.uid) for m in box.messages()]
    heads = {data.split(b"\r\n\r\n")[0].rsplit(b"\r\n", 1)[-1] + b"\r\n" for data in stored}
    assert all(a in heads for a in accepted)
    assert all(data.endswith(BODY) for data in stored)  # no half message was numbered


def test_kill_9_of_imapd_mid_append_loses_no_appended_message(mroot):
    given: dict[int, bytes] = {}
    for round_ in range(3):
        proc = mroot.spawn("imap")
        im = imaplib.IMAP4("127.0.0.1", mroot.port("service.imap.port"), timeout=10)
        im.login(USER, PASSWORD)
        kill_later(proc, 0.3 + 0.1 * round_)
        try:
            for i in range(100_000):
                data = b"Subject: a%d-%d\r\n\r\n" % (round_, i) + BODY
                typ, resp = im.append("INBOX", None, None, data)
                uid = int(re.search(rb"APPENDUID \d+ (\d+)", resp[0]).group(1))
                given[uid] = data
        except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError):
            pass
        proc.wait(5)
        time.sleep(0)
    assert len(given) > 3
    box = Store(mroot.root).mailbox(USER)
    for uid, data in given.items():
        assert box.read(uid) == data
