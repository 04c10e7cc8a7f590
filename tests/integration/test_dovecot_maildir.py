"""The store is real Maildir++ (issue 13): mail delivered by the built-in SMTP server, filed and
flagged through the built-in imapd, is served by Dovecot (`mail_location = maildir:...` on the same
store) with the same UIDVALIDITY, UIDs, flags, keywords and folders, and what Dovecot changes is
read back by msgsrv.

Dovecot refuses mail access as root, so when the tests run as root the server root is handed to
the `mail` user before Dovecot starts (in a deployment both servers run as the same user).
"""

from __future__ import annotations

import imaplib
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
from pathlib import Path

import pytest

from msgsrv.store.mailbox import Store
from tests.conftest import free_ports
from tests.integration.conftest import need
from tests.services.conftest import PASSWORD, USER, make_root, wait_accepting

pytestmark = pytest.mark.integration
DOVECOT_PASSWORD = "dovecot-secret"  # Dovecot's own passdb (static); the mailboxes are what is shared

DOVECOT_CONF = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = msgsrv-maildir-{port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
log_path = {dir}/dovecot.log
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{store}/%u
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@pytest.fixture
def shared_store():
    """A server root outside pytest's private temp tree, so another uid can reach it."""
    dovecot = need("dovecot", "dovecot-imapd")
    if not Path("/usr/lib/dovecot/imap").exists():
        pytest.skip("Dovecot's IMAP server not installed (Debian package dovecot-imapd)")
    if os.geteuid() != 0:
        pytest.skip("the Dovecot master is run as root here (it drops privileges itself)")
    base = Path(tempfile.mkdtemp(prefix="msgsrv-dovecot-"))
    base.chmod(0o755)
    m = make_root(base / "root")
    try:
        yield m, dovecot, base
    finally:
        m.stop_all()
        shutil.rmtree(base, ignore_errors=True)


def start_dovecot(dovecot: str, base: Path, store: Path) -> tuple[subprocess.Popen, int]:
    mail = pwd.getpwnam("mail")
    subprocess.run(["chown", "-R", f"{mail.pw_uid}:{mail.pw_gid}", str(store.parent.parent.parent)], check=True)
    d = base / "dovecot"
    d.mkdir()
    (port,) = free_ports(1)
    conf = d / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(dir=d, store=store, port=port, password=DOVECOT_PASSWORD, uid=mail.pw_uid,
                                        gid=mail.pw_gid))
    proc = subprocess.Popen([dovecot, "-F", "-c", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    wait_accepting(port, proc)
    return proc, port


def test_dovecot_serves_what_msgsrv_delivered_and_msgsrv_reads_what_dovecot_changed(shared_store):
    m, dovecot, base = shared_store
    m.spawn("dispatcher")
    m.spawn("imap")
    with smtplib.SMTP("127.0.0.1", m.port("service.smtp.port"), timeout=10) as s:
        for i in range(3):
            s.sendmail("bob@example.org", [f"{USER}@example.org"],
                       f"From: bob@example.org\r\nSubject: maildir {i}\r\n\r\nbody {i}\r\n")
    ours = imaplib.IMAP4("127.0.0.1", m.port("service.imap.port"), timeout=10)
    ours.login(USER, PASSWORD)
    ours.create("Archive.2024")
    ours.select("INBOX")
    ours.uid("STORE", "2", "+FLAGS", r"(\Flagged $Important)")
    ours.uid("COPY", "3", "Archive.2024")
    validity = re.search(rb"UIDVALIDITY (\d+)", ours.status("INBOX", "(UIDVALIDITY)")[1][0]).group(1)
    ours.logout()
    bodies = {m_.uid: Store(m.root).mailbox(USER).read(m_.uid) for m_ in Store(m.root).messages(USER)}
    m.stop_all()

    store = m.root.store_dir
    proc, port = start_dovecot(dovecot, base, store)
    try:
        im = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        im.login(USER, DOVECOT_PASSWORD)
        status = im.status("INBOX", "(UIDVALIDITY)")[1][0]
        assert re.search(rb"UIDVALIDITY (\d+)", status).group(1) == validity  # clients keep their caches
        im.select("INBOX")
        typ, data = im.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
        fetched = {int(re.search(rb"UID (\d+)", d[0]).group(1)): (d[0], d[1]) for d in data if isinstance(d, tuple)}
        assert sorted(fetched) == [1, 2, 3]
        for uid, (_head, body) in fetched.items():
            assert body == bodies[uid]  # the very octets msgsrv accepted with 250
        assert b"\\Flagged" in fetched[2][0] and b"$Important" in fetched[2][0]
        listing = b" ".join(im.list()[1])
        assert b'"." Archive.2024' in listing or b'"." "Archive.2024"' in listing
        im.select("Archive.2024")
        assert b"Subject: maildir 2" in im.fetch("1", "(BODY.PEEK[HEADER])")[1][0][1]
        im.select("INBOX")  # Dovecot changes something: msgsrv must see it
        im.uid("STORE", "1", "+FLAGS", r"(\Seen)")
        im.append("INBOX", None, None, b"Subject: from dovecot\r\n\r\nhi\r\n")
        im.logout()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        proc.stderr.close()
    msgs = Store(m.root).messages(USER)
    assert [x.uid for x in msgs] == [1, 2, 3, 4]
    assert "\\Seen" in msgs[0].flags and {"\\Flagged", "$Important"} <= msgs[1].flags
    assert Store(m.root).mailbox(USER).read(4) == b"Subject: from dovecot\r\n\r\nhi\r\n"
