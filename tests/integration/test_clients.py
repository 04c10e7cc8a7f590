"""Real mail clients nobody here wrote against the built-in servers (issue 13 "Tests and numbers"):
curl (pop3, pop3s, pop3 + STLS, smtp, smtp + STARTTLS + AUTH, smtps) and fetchmail (POP3 with
STLS, POP3S), each verifying the suite's certificate. Python's poplib/smtplib with TLS are in
tests/services/test_tls.py. Each test skips, naming the Debian package, when its client is missing
(scripts/ci-deps.sh installs curl and fetchmail)."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from msgsrv import tls
from msgsrv.store.mailbox import Store
from tests.integration.conftest import need
from tests.services.conftest import PASSWORD, USER, make_root

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mail(tmp_path_factory):
    m = make_root(tmp_path_factory.mktemp("clients") / "root")
    for component in ("cert", "pop", "dispatcher"):
        m.spawn(component)
    yield m
    m.stop_all()


def cacert(m) -> str:
    return str(tls.default_paths(m.root)[0])


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([need("curl", "curl"), "--silent", "--show-error", "--max-time", "30", *args],
                          capture_output=True, timeout=60)


def deliver(m, subject: str) -> None:
    Store(m.root).deliver(USER, f"From: bob@example.org\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode())


def inbox_subjects(m) -> list[str]:
    box = Store(m.root).mailbox(USER)
    out = []
    for msg in box.messages():
        for line in box.read(msg.uid).split(b"\r\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:].decode())
    return out


@pytest.mark.parametrize("scheme,parameter,extra", [
    ("pop3", "service.pop.port", []),
    ("pop3", "service.pop.port", ["--ssl-reqd"]),  # STLS
    ("pop3s", "service.pop.sslport", []),
])
def test_curl_lists_and_retrieves_over_pop3(mail, scheme, parameter, extra):
    subject = f"curl-{scheme}-{uuid.uuid4().hex[:8]}"
    deliver(mail, subject)
    url = f"{scheme}://127.0.0.1:{mail.port(parameter)}/"
    auth = ["--user", f"{USER}:{PASSWORD}", "--cacert", cacert(mail), *extra]
    listing = curl(*auth, url)
    assert listing.returncode == 0, listing.stderr
    numbers = [line.split()[0] for line in listing.stdout.decode().splitlines() if line.strip()]
    assert numbers
    last = curl(*auth, url + numbers[-1])
    assert last.returncode == 0, last.stderr
    assert f"Subject: {subject}".encode() in last.stdout and f"body of {subject}".encode() in last.stdout


@pytest.mark.parametrize("scheme,parameter,extra", [
    ("smtp", "service.smtp.port", []),
    ("smtp", "service.smtp.port", ["--ssl-reqd", "--user", f"{USER}:{PASSWORD}"]),  # STARTTLS, AUTH
    ("smtps", "service.smtp.sslport", ["--user", f"{USER}:{PASSWORD}"]),  # submission: AUTH required
])
def test_curl_sends_over_smtp(mail, tmp_path, scheme, parameter, extra):
    subject = f"curl-{scheme}-{'-'.join(extra[:1]) or 'plain'}-{uuid.uuid4().hex[:8]}"
    msg = tmp_path / "msg.eml"
    msg.write_bytes(f"From: bob@example.org\r\nTo: {USER}@example.org\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())
    r = curl(f"{scheme}://127.0.0.1:{mail.port(parameter)}", "--cacert", cacert(mail), *extra,
             "--mail-from", "bob@example.org", "--mail-rcpt", f"{USER}@example.org", "--upload-file", str(msg))
    assert r.returncode == 0, r.stderr
    assert subject in inbox_subjects(mail)


def test_curl_smtps_without_auth_is_refused(mail, tmp_path):
    msg = tmp_path / "msg.eml"
    msg.write_bytes(b"Subject: no auth\r\n\r\nx\r\n")
    r = curl(f"smtps://127.0.0.1:{mail.port('service.smtp.sslport')}", "--cacert", cacert(mail),
             "--mail-from", "bob@example.org", "--mail-rcpt", f"{USER}@example.org", "--upload-file", str(msg))
    assert r.returncode != 0 and b"530" in r.stderr
    assert "no auth" not in inbox_subjects(mail)


def test_curl_does_not_trust_the_server_without_its_certificate(mail):
    r = curl("--user", f"{USER}:{PASSWORD}", f"pop3s://127.0.0.1:{mail.port('service.pop.sslport')}/")
    assert r.returncode == 60  # "Peer certificate cannot be authenticated with given CA certificates"


@pytest.mark.parametrize("tls_mode", ["stls", "pop3s"])
def test_fetchmail_fetches_and_deletes_over_pop3(mail, tmp_path, tls_mode):
    fetchmail = need("fetchmail", "fetchmail")
    subjects = [f"fetchmail-{tls_mode}-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    for s in subjects:
        deliver(mail, s)
    port = mail.port("service.pop.port" if tls_mode == "stls" else "service.pop.sslport")
    mode = "sslproto tls1.2+" if tls_mode == "stls" else "ssl"  # STLS required / implicit TLS
    out = tmp_path / "mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll 127.0.0.1 protocol pop3 port {port}\n"
        f'  user "{USER}" there with password "{PASSWORD}" is "{USER}" here\n'
        f"  {mode} sslcertck sslcertfile {cacert(mail)} sslcommonname localhost\n"
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n")
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(tmp_path)}
    r = subprocess.run([fetchmail, "-f", str(rc), "--pidfile", str(tmp_path / "pid"), "-v"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    got = out.read_text()
    for s in subjects:
        assert f"Subject: {s}" in got and f"body of {s}" in got
    if tls_mode == "stls":
        assert "POP3> STLS" in r.stderr + r.stdout
    assert Store(mail.root).messages(USER) == []  # fetched messages are deleted (no `keep`)
