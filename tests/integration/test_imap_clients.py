"""Real IMAP clients from Debian against the built-in imapd (issue 13 "Tests and numbers"): mutt in
batch mode opening INBOX over IMAP (STARTTLS) and IMAPS, curl's imap:// and imaps:// URLs, and
fetchmail over IMAPS. Each skips, naming its package, when the client is not installed
(scripts/ci-deps.sh installs them for CI)."""

from __future__ import annotations

import os
import subprocess

import pytest

from msgsrv.store.mailbox import Store
from msgsrv.tls import default_paths
from tests.integration.conftest import need
from tests.services.conftest import PASSWORD, USER, make_root


@pytest.fixture
def imap(tmp_path):
    m = make_root(tmp_path / "root")
    m.spawn("imap")
    store = Store(m.root)
    for i in range(3):
        store.deliver(USER, b"From: ann@example.org\r\nSubject: client test %d\r\n\r\nbody %d\r\n" % (i, i))
    yield m
    m.stop_all()


def cert(m) -> str:
    return str(default_paths(m.root)[0])


def run_mutt(m, tmp_path, url: str) -> str:
    mutt = need("mutt", "mutt")
    script = need("script", "util-linux")
    home = tmp_path / "home"
    (home / "Mail").mkdir(parents=True)
    rc = home / "muttrc"
    rc.write_text("\n".join([
        f"set imap_user={USER}", f'set imap_pass="{PASSWORD}"', f"set certificate_file={cert(m)}",
        "set ssl_starttls=yes", 'set header_cache=""', 'set message_cachedir=""', "set wait_key=no",
        "set quit=yes", "set move=no", "set mark_old=no", "set timeout=5", f"set folder={home}/Mail",
        'set spoolfile=""', 'set record=""', 'set postponed=""', ""]))
    # mutt wants a terminal: `script` gives it one; the pushed keys display message 1 and quit
    command = f"""{mutt} -n -F {rc} -f '{url}' -e 'push "<display-message><exit><quit>"'"""
    env = dict(os.environ, HOME=str(home), TERM="vt100")
    proc = subprocess.run([script, "-qec", command, "/dev/null"], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:]
    return proc.stdout.decode("utf-8", "replace")


@pytest.mark.parametrize("scheme,param", [("imap", "service.imap.port"), ("imaps", "service.imap.sslport")])
def test_mutt_opens_inbox_and_reads_a_message(imap, tmp_path, scheme, param):
    screen = run_mutt(imap, tmp_path, f"{scheme}://{USER}@127.0.0.1:{imap.port(param)}/INBOX")
    assert "Msgs:3" in screen
    flags = [m.flags for m in Store(imap.root).messages(USER)]
    assert flags == [{"\\Seen"}, frozenset(), frozenset()]  # mutt fetched message 1's body


def curl(*args: str) -> str:
    proc = subprocess.run([need("curl", "curl"), "-sS", "--max-time", "20", "--user", f"{USER}:{PASSWORD}", *args],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode()


def test_curl_imap_and_imaps_urls(imap):
    plain, tls = imap.port("service.imap.port"), imap.port("service.imap.sslport")
    assert curl(f"imap://127.0.0.1:{plain}/") == '* LIST (\\HasNoChildren) "." "INBOX"\r\n'
    assert curl(f"imap://127.0.0.1:{plain}/INBOX;UID=2") == "From: ann@example.org\r\nSubject: client test 1\r\n\r\nbody 1\r\n"
    assert curl("--cacert", cert(imap), f"imaps://localhost:{tls}/INBOX?SUBJECT%20%22test%202%22") == "* SEARCH 3\r\n"
    header = curl("--ssl-reqd", "--cacert", cert(imap),  # STARTTLS on the IMAP port
                  f"imap://localhost:{plain}/INBOX;UID=1;SECTION=HEADER.FIELDS%20(SUBJECT)")
    assert header == "Subject: client test 0\r\n\r\n"


def test_fetchmail_over_imaps(imap, tmp_path):
    fetchmail = need("fetchmail", "fetchmail")
    out = tmp_path / "fetched"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f'poll localhost with proto IMAP port {imap.port("service.imap.sslport")} user "{USER}" there '
                  f'with password "{PASSWORD}" is "nobody" here options keep fetchall ssl sslcertck '
                  f'sslcertfile "{cert(imap)}" mda "/bin/sh -c \'cat >> {out}\'"\n')
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path))
    proc = subprocess.run([fetchmail, "-f", str(rc), "--nosyslog", "--pidfile", str(tmp_path / "fm.pid")],
                          env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in out.read_text().splitlines() if line.startswith("Subject:")] == [
        "Subject: client test 0", "Subject: client test 1", "Subject: client test 2"]
