"""msgsrv/tls.py: the self-signed certificate is made once, owner-only, and a real handshake works."""

from __future__ import annotations

import datetime
import socket
import stat
import subprocess
import sys
import threading

import pytest

from msgsrv import tls
from msgsrv.paths import ServerRoot


class Cfg:
    def __init__(self, **values):
        self.values = values

    def get_str(self, name, default=""):
        return self.values.get(name, default)


def test_self_signed_certificate_is_made_once_and_owner_only(tmp_path):
    root = ServerRoot(tmp_path)
    crt, key = tls.cert_paths(root, Cfg())
    assert crt.exists() and key.exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = crt.read_bytes()
    assert tls.cert_paths(root, Cfg()) == (crt, key)
    assert crt.read_bytes() == first


def test_one_of_file_and_key_is_an_error(tmp_path):
    with pytest.raises(tls.TlsError, match="both"):
        tls.cert_paths(ServerRoot(tmp_path), Cfg(**{"local.cert.file": "/x.pem"}))


def test_unreadable_configured_certificate_names_the_file(tmp_path):
    cfg = Cfg(**{"local.cert.file": str(tmp_path / "no.pem"), "local.cert.key": str(tmp_path / "no.key")})
    with pytest.raises(tls.TlsError, match="no.pem"):
        tls.server_context(ServerRoot(tmp_path), cfg)


def test_handshake_with_the_client_context(tmp_path):
    root = ServerRoot(tmp_path)
    server_ctx = tls.server_context(root, Cfg())
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    got = {}

    def serve():
        conn, _ = lsock.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as s:
            s.sendall(b"hello")

    t = threading.Thread(target=serve)
    t.start()
    with socket.create_connection(lsock.getsockname(), timeout=5) as raw:
        with tls.client_context(root).wrap_socket(raw) as s:
            got["data"] = s.recv(5)
            got["version"] = s.version()
    t.join(5)
    lsock.close()
    assert got["data"] == b"hello"
    assert got["version"] in ("TLSv1.2", "TLSv1.3")


# -- issue 14: a server context made ahead (by the watcher, before it forks) is reused ----------------
def test_server_context_is_reused_until_the_certificate_is_replaced(tmp_path):
    root = ServerRoot(tmp_path)
    crt, key = tls.cert_paths(root, Cfg())
    first = tls.server_context(root, Cfg())
    assert tls.server_context(root, Cfg()) is first  # the files are the same: made once
    # a renewed pair (certd makes it again when it nears its end): the next context is new
    fresh_key, fresh_crt = tls._make_self_signed("renewed.example.org")
    crt.write_bytes(fresh_crt)
    key.write_bytes(fresh_key)
    second = tls.server_context(root, Cfg())
    assert second is not first
    assert tls.server_context(root, Cfg()) is second


def test_warm_never_makes_a_certificate_and_a_forked_child_gets_the_context_made(tmp_path):
    import os

    root = ServerRoot(tmp_path)
    tls.warm(root, Cfg())
    assert not tls.default_paths(root)[0].exists()  # certd's (or the first server's) to make
    tls.cert_paths(root, Cfg())
    tls.warm(root, Cfg())
    made = tls.server_context(root, Cfg())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # what a pre-forked server does: the same object, no key loaded again
        os.write(w, b"1" if tls.server_context(root, Cfg()) is made else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
    os.close(r)
    os.close(w)


def test_a_server_waits_for_the_pair_another_process_is_making(tmp_path, monkeypatch):
    """certd starts together with the servers (operations.op_start): on a new server root it holds
    ensure_self_signed's lock while it makes the pair. A server that finds no pair waits for that
    lock and uses what was made, instead of making a pair of its own."""
    import fcntl
    import os
    import time

    root = ServerRoot(tmp_path)
    crt, key = tls.default_paths(root)
    crt.parent.mkdir(parents=True)
    made = []
    monkeypatch.setattr(tls, "_make_in_child", lambda r: made.append("child"))
    monkeypatch.setattr(tls, "_make_in_fork", lambda r: made.append("fork"))
    lock = os.open(crt.parent / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # "certd" is making it
    got = []

    def server() -> None:
        t0 = time.monotonic()
        got.append((tls.cert_paths(root, Cfg()), time.monotonic() - t0))

    t = threading.Thread(target=server)
    t.start()
    time.sleep(0.3)
    assert not got  # still waiting
    key_pem, cert_pem = tls._make_self_signed("localhost")
    key.write_bytes(key_pem)
    crt.write_bytes(cert_pem)
    os.close(lock)  # made: the lock is released
    t.join(10)
    assert got and got[0][0] == (crt, key) and got[0][1] >= 0.3
    assert made == [] and crt.read_bytes() == cert_pem


# -- certificate_info: the standard library's reading agrees with the cryptography package's -------
def _certificate(subject, issuer=None, days=30):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pkey = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
            .public_key(pkey.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days))
            .sign(pkey, hashes.SHA256()))
    return cert, cert.public_bytes(serialization.Encoding.PEM)


def _expected(cert):
    from cryptography.hazmat.primitives import hashes

    digest = cert.fingerprint(hashes.SHA256()).hex()
    return (cert.subject.rfc4514_string(), cert.not_valid_after_utc, cert.issuer == cert.subject,
            ":".join(digest[i:i + 2] for i in range(0, len(digest), 2)))


def _names():
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    a = x509.NameAttribute
    yield x509.Name([a(NameOID.COMMON_NAME, "mail.example.org"), a(NameOID.ORGANIZATION_NAME, "msgsrv self-signed")])
    yield x509.Name([a(NameOID.COUNTRY_NAME, "JP"), a(NameOID.STATE_OR_PROVINCE_NAME, "Tōkyō"),
                     a(NameOID.LOCALITY_NAME, "Chiyoda, 1-1"), a(NameOID.ORGANIZATIONAL_UNIT_NAME, "a+b;c<d>e\"f\\g"),
                     a(NameOID.COMMON_NAME, "#leading and trailing ")])
    yield x509.Name([x509.RelativeDistinguishedName([a(NameOID.COMMON_NAME, "multi"),
                                                     a(NameOID.ORGANIZATION_NAME, "valued")]),
                     x509.RelativeDistinguishedName([a(NameOID.DOMAIN_COMPONENT, "org")])])


@pytest.mark.parametrize("index", range(3))
def test_certificate_info_reads_what_the_cryptography_package_reads(tmp_path, index):
    subject = list(_names())[index]
    cert, pem = _certificate(subject)
    path = tmp_path / "c.pem"
    path.write_bytes(pem)
    info = tls.certificate_info(path)
    assert (info.subject, info.not_after, info.self_signed, info.sha256) == _expected(cert)
    assert info.path == path and info.days_left() in (29, 30)


def test_certificate_info_reads_the_first_certificate_of_a_chain_after_other_text(tmp_path):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    leaf, leaf_pem = _certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]),
                                  issuer=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]), days=90)
    _, ca_pem = _certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]), days=900)
    path = tmp_path / "chain.pem"
    path.write_bytes(b"subject=CN = leaf\nissuer=CN = ca\n" + leaf_pem + ca_pem)
    info = tls.certificate_info(path)
    assert (info.subject, info.not_after, info.self_signed, info.sha256) == _expected(leaf)
    assert not info.self_signed


@pytest.mark.parametrize("content", [None, b"", b"not a certificate\n",
                                     b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_certificate_info_says_which_file_it_cannot_read(tmp_path, content):
    path = tmp_path / "bad.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(tls.TlsError, match=r"unable to read certificate .*bad\.pem"):
        tls.certificate_info(path)


def test_certificate_info_does_not_import_cryptography(tmp_path):
    root = ServerRoot(tmp_path)
    crt, _ = tls.ensure_self_signed(root)
    code = ("import sys; from msgsrv import tls; i = tls.certificate_info(sys.argv[1]); "
            "print(i.subject, i.days_left(), 'cryptography' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(crt)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == [str(tls.certificate_info(crt).days_left()), "False"]
    assert r.stdout.startswith("O=msgsrv self-signed,CN=")  # RFC 4514: the last RDN first
