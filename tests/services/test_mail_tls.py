"""TLS and passwords on POP, SMTP and LMTP (issue 13 "TLS and authentication"): the cert component
owns the certificate, STLS / STARTTLS / implicit-TLS ports, `local.requiretls`, AUTH PLAIN/LOGIN."""

from __future__ import annotations

import datetime
import poplib
import smtplib
import socket
import ssl
import subprocess
import sys

import pytest

from msgsrv import tls
from msgsrv.config.store import ConfigStore
from tests.services.conftest import PASSWORD, PORTS, USER, Conn, server_env, wait_accepting


def context(m) -> ssl.SSLContext:
    return tls.client_context(m.root)


# -- the cert component ----------------------------------------------------------------------------
def test_cert_component_creates_the_certificate_on_first_start_and_reports_it(mailroot):
    crt, key = tls.default_paths(mailroot.root)
    assert not crt.exists()
    mailroot.spawn("cert")
    assert crt.exists() and key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"
    info = tls.certificate_info(crt)
    assert info.self_signed and info.days_left() > 800
    with Conn(mailroot.port("local.cert.port")) as c:
        assert c.line() == b"* OK certd ready"
        status = c.ask("STATUS").decode()
        assert status.startswith("+OK certd pid=")
        assert f"cert={crt}" in status and f"sha256={info.sha256}" in status
        assert f"expires={info.not_after:%Y-%m-%d}" in status
    first = crt.read_bytes()
    mailroot.stop_all()
    mailroot.spawn("cert")  # a second start keeps the certificate
    assert crt.read_bytes() == first


def test_a_server_that_makes_the_certificate_does_not_keep_cryptography_loaded(mailroot):
    proc = mailroot.spawn("pop")  # before certd: popd has the certificate made, in a child process
    assert tls.default_paths(mailroot.root)[0].exists()
    with open(f"/proc/{proc.pid}/maps") as f:
        assert "cryptography" not in f.read()  # ~14 MB that popd would otherwise carry


def test_servers_started_together_share_one_certificate(mailroot):
    for c in ("cert", "pop", "dispatcher"):
        mailroot.spawn(c, wait=False)
    for proc, c in zip(mailroot.procs, ("cert", "pop", "dispatcher")):
        for parameter in PORTS[c]:
            wait_accepting(mailroot.port(parameter), proc)
    fingerprints = set()
    for parameter in ("service.pop.sslport", "service.smtp.sslport"):
        with socket.create_connection(("127.0.0.1", mailroot.port(parameter)), timeout=10) as raw:
            with context(mailroot).wrap_socket(raw) as s:
                fingerprints.add(s.getpeercert(binary_form=True))
    assert len(fingerprints) == 1


def test_a_configured_certificate_that_is_unusable_is_reported_by_certd(mailroot, tmp_path):
    ConfigStore(mailroot.root.config_file).update({"local.cert.file": str(tmp_path / "none.pem"),
                                                   "local.cert.key": str(tmp_path / "none.key")})
    mailroot.spawn("cert")
    with Conn(mailroot.port("local.cert.port")) as c:
        line = c.line().decode()
    assert line.startswith("-ERR certificate problem: ") and "none.pem" in line
    assert "certificate problem" in mailroot.root.default_log.read_text()


def test_a_configured_certificate_is_used_instead_of_the_self_signed_one(mailroot, tmp_path):
    from msgsrv.paths import ServerRoot

    other = ServerRoot(tmp_path / "elsewhere")
    crt, key = tls.ensure_self_signed(other, hostname="mail.example.org")
    ConfigStore(mailroot.root.config_file).update({"local.cert.file": str(crt), "local.cert.key": str(key)})
    mailroot.spawn("pop")
    with socket.create_connection(("127.0.0.1", mailroot.port("service.pop.sslport")), timeout=10) as raw:
        ctx = ssl.create_default_context(cafile=str(crt))
        with ctx.wrap_socket(raw, server_hostname="mail.example.org") as s:
            assert s.recv(100).startswith(b"+OK")
    assert not tls.default_paths(mailroot.root)[0].exists()  # no self-signed one was made


def test_self_signed_certificate_near_its_end_is_made_again(tmp_path):
    from cryptography import x509

    from msgsrv.paths import ServerRoot

    root = ServerRoot(tmp_path)
    crt, _ = tls.ensure_self_signed(root)
    assert tls.ensure_self_signed(root)[0].read_bytes() == crt.read_bytes()  # fresh: kept
    old = x509.load_pem_x509_certificate(crt.read_bytes())
    assert old.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=800)
    crt.write_bytes(b"not a certificate")  # unreadable counts as missing
    tls.ensure_self_signed(root)
    assert tls.certificate_info(crt).days_left() > 800


def test_certd_renews_a_pair_near_its_end_without_keeping_cryptography(mailroot):
    """A self-signed pair 10 days from its end: certd's start makes a new one (in a fork that
    imports cryptography), and certd itself never maps the package."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    crt, key = tls.default_paths(mailroot.root)
    crt.parent.mkdir(parents=True, exist_ok=True)
    pkey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    now = datetime.datetime.now(datetime.UTC)
    old = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pkey.public_key())
           .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
           .not_valid_after(now + datetime.timedelta(days=10)).sign(pkey, hashes.SHA256()))
    key.write_bytes(pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    crt.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    assert tls.certificate_info(crt).days_left() in (9, 10)
    proc = mailroot.spawn("cert")
    info = tls.certificate_info(crt)
    assert info.days_left() > 800 and info.subject != "CN=old"
    with Conn(mailroot.port("local.cert.port")) as c:
        assert c.line() == b"* OK certd ready"
        assert f"sha256={info.sha256}" in c.ask("STATUS").decode()
    with open(f"/proc/{proc.pid}/maps") as f:
        assert "cryptography" not in f.read()


def test_a_server_whose_certificate_cannot_load_fails_to_start_with_status_1(mailroot, tmp_path):
    ConfigStore(mailroot.root.config_file).update({"local.cert.file": str(tmp_path / "no.pem"),
                                                   "local.cert.key": str(tmp_path / "no.key")})
    for component in ("pop", "http", "dispatcher"):
        r = subprocess.run([sys.executable, "-m", "msgsrv.services", component], env=server_env(mailroot.base),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith(f"msgsrv-server: fatal: {component}: unable to load certificate ")
        assert "no.pem" in r.stderr and "Traceback" not in r.stderr


# -- POP ------------------------------------------------------------------------------------------------
def test_pop_stls_then_login_and_pop3s(mailroot):
    mailroot.spawn("pop")
    p = poplib.POP3("127.0.0.1", mailroot.port("service.pop.port"), timeout=10)
    assert "STLS" in p.capa() and "USER" in p.capa()
    p.stls(context=context(mailroot))
    assert "STLS" not in p.capa()
    assert p.user(USER).startswith(b"+OK") and p.pass_(PASSWORD).startswith(b"+OK")
    assert p.sock.version() in ("TLSv1.2", "TLSv1.3")
    p.quit()
    s = poplib.POP3_SSL("127.0.0.1", mailroot.port("service.pop.sslport"), timeout=10, context=context(mailroot))
    assert "STLS" not in s.capa()
    with pytest.raises(poplib.error_proto, match="TLS active"):
        s._shortcmd("STLS")
    assert s.user(USER).startswith(b"+OK") and s.pass_(PASSWORD).startswith(b"+OK")
    s.quit()


def test_pop_stls_discards_what_was_sent_with_it_in_cleartext(mailroot):
    """RFC 2595 §3.1: commands pipelined after STLS in cleartext must not run over TLS."""
    mailroot.spawn("pop")
    raw = socket.create_connection(("127.0.0.1", mailroot.port("service.pop.port")), timeout=10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"+OK")
    raw.sendall(b"STLS\r\nUSER injected\r\n")
    assert f.readline().startswith(b"+OK begin TLS")
    s = context(mailroot).wrap_socket(raw)
    s.sendall(b"NOOP\r\n")  # the first answer over TLS is to NOOP, not to the injected USER
    assert s.recv(200).startswith(b"-ERR command not valid in this state")
    s.close()


def test_requiretls_refuses_user_pass_in_cleartext_only(mailroot):
    ConfigStore(mailroot.root.config_file).update({"local.requiretls": "yes"})
    mailroot.spawn("pop")
    p = poplib.POP3("127.0.0.1", mailroot.port("service.pop.port"), timeout=10)
    capa = p.capa()
    assert "USER" not in capa and "STLS" in capa  # RFC 2595 §4
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\] plaintext authentication disallowed"):
        p.user(USER)
    p.stls(context=context(mailroot))
    assert "USER" in p.capa()
    assert p.user(USER).startswith(b"+OK") and p.pass_(PASSWORD).startswith(b"+OK")
    p.quit()
    s = poplib.POP3_SSL("127.0.0.1", mailroot.port("service.pop.sslport"), timeout=10, context=context(mailroot))
    assert s.user(USER).startswith(b"+OK") and s.pass_(PASSWORD).startswith(b"+OK")
    s.quit()


# -- SMTP / LMTP ------------------------------------------------------------------------------------
def test_smtp_starttls_then_auth_plain_and_login(mailroot):
    mailroot.spawn("dispatcher")
    for mechanism in ("PLAIN", "LOGIN"):
        with smtplib.SMTP("127.0.0.1", mailroot.port("service.smtp.port"), timeout=10) as s:
            s.ehlo()
            assert s.has_extn("starttls")
            s.starttls(context=context(mailroot))
            s.ehlo()
            assert not s.has_extn("starttls") and set(s.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
            s.user, s.password = USER, PASSWORD
            code, text = s.auth(mechanism, getattr(s, f"auth_{mechanism.lower()}"))
            assert (code, text) == (235, b"2.7.0 Authentication successful")
            assert s.sendmail("bob@example.org", [USER], b"Subject: tls\r\n\r\nx\r\n") == {}
    from msgsrv.store.mailbox import Store

    box = Store(mailroot.root).mailbox(USER)
    head = box.read(box.messages()[-1].uid)
    assert b"with ESMTPSA;" in head  # RFC 3848: TLS and AUTH


def test_smtps_submission_requires_auth(mailroot):
    mailroot.spawn("dispatcher")
    with smtplib.SMTP_SSL("127.0.0.1", mailroot.port("service.smtp.sslport"), timeout=10,
                          context=context(mailroot)) as s:
        s.ehlo()
        assert "auth" in s.esmtp_features and not s.has_extn("starttls")
        assert s.docmd("MAIL FROM:<bob@example.org>") == (530, b"5.7.0 Authentication required")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(USER, "wrong")
        s.login(USER, PASSWORD)
        assert s.sendmail("bob@example.org", [f"{USER}@example.org"], b"Subject: smtps\r\n\r\nx\r\n") == {}


def test_requiretls_hides_and_refuses_smtp_auth_in_cleartext(mailroot):
    ConfigStore(mailroot.root.config_file).update({"local.requiretls": "yes"})
    mailroot.spawn("dispatcher")
    with smtplib.SMTP("127.0.0.1", mailroot.port("service.smtp.port"), timeout=10) as s:
        s.ehlo()
        assert not s.has_extn("auth")
        code, text = s.docmd("AUTH PLAIN AGFsaWNlAHdyb25n")
        assert code == 538 and text.startswith(b"5.7.11")
        s.starttls(context=context(mailroot))
        s.ehlo()
        assert s.has_extn("auth")
        s.login(USER, PASSWORD)


def test_smtp_without_requiretls_offers_auth_in_cleartext(mailroot):
    mailroot.spawn("dispatcher")
    with smtplib.SMTP("127.0.0.1", mailroot.port("service.smtp.port"), timeout=10) as s:
        s.ehlo()
        assert s.has_extn("auth")
        s.login(USER, PASSWORD)


def test_lmtp_starttls_and_no_auth(mailroot):
    mailroot.spawn("dispatcher")
    with smtplib.LMTP("127.0.0.1", mailroot.port("service.lmtp.port"), timeout=10) as s:
        s.ehlo()
        assert s.has_extn("starttls") and not s.has_extn("auth")
        s.starttls(context=context(mailroot))
        s.ehlo()
        assert not s.has_extn("auth")
        assert s.docmd("AUTH PLAIN") == (502, b"5.5.1 AUTH is not offered over LMTP")
        assert s.sendmail("bob@example.org", [USER], b"Subject: lmtp tls\r\n\r\nx\r\n") == {}
