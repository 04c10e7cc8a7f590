"""TLS for the built-in servers: one server certificate for the whole suite (the cert component's).

`local.cert.file` / `local.cert.key` name a real certificate and key (PEM). When both are empty the
suite uses a self-signed certificate under the server root, `data/cert/server.crt` and
`server.key` (mode 0600), created on first use with the `cryptography` package. Every server that
offers STARTTLS/STLS or an implicit-TLS port builds its context with `server_context()`; msprobe and
tests use `client_context()`, which trusts that certificate.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import socket
import ssl
from pathlib import Path

from msgsrv.atomicfile import write_atomic
from msgsrv.paths import DIR_MODE, ServerRoot

VALID_DAYS = 825  # the longest validity clients accept for a server certificate


class TlsError(Exception):
    """The certificate or key cannot be read or made."""


def default_paths(root: ServerRoot) -> tuple[Path, Path]:
    d = root.data_dir / "cert"
    return d / "server.crt", d / "server.key"


def cert_paths(root: ServerRoot, config) -> tuple[Path, Path]:
    """(certificate, key) in force: the configured pair, else the self-signed one (made if missing)."""
    cert = config.get_str("local.cert.file", "") if config is not None else ""
    key = config.get_str("local.cert.key", "") if config is not None else ""
    if cert or key:
        if not (cert and key):
            raise TlsError("local.cert.file and local.cert.key must both be set, or both be empty")
        return Path(cert), Path(key)
    crt, k = default_paths(root)
    if not (crt.exists() and k.exists()):
        ensure_self_signed(root)
    return crt, k


def ensure_self_signed(root: ServerRoot, hostname: str | None = None) -> tuple[Path, Path]:
    """Create the suite's self-signed certificate once (under a lock, so concurrent servers agree)."""
    crt, key = default_paths(root)
    crt.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    lock = os.open(crt.parent / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if crt.exists() and key.exists():
            return crt, key
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        host = hostname or socket.gethostname() or "localhost"
        pkey = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "msgsrv self-signed")])
        now = datetime.datetime.now(datetime.UTC)
        import ipaddress

        sans = [x509.DNSName(host), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(pkey.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(pkey, hashes.SHA256()))
        write_atomic(key, pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode())
        write_atomic(crt, cert.public_bytes(serialization.Encoding.PEM).decode())
        return crt, key
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)


def server_context(root: ServerRoot, config) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) with the suite's certificate; raises TlsError."""
    crt, key = cert_paths(root, config)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(crt), str(key))
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"unable to load certificate {crt}: {getattr(e, 'strerror', None) or e}") from None
    return ctx


def client_context(root: ServerRoot, config=None) -> ssl.SSLContext:
    """A client context that trusts the suite's certificate (for msprobe and tests)."""
    crt, _ = cert_paths(root, config)
    ctx = ssl.create_default_context(cafile=str(crt))
    ctx.check_hostname = False  # probes connect by address; the chain is still verified
    return ctx
