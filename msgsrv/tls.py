"""TLS for the built-in servers: one server certificate for the whole suite (the cert component's).

`local.cert.file` / `local.cert.key` name a real certificate and key (PEM). When both are empty the
suite uses a self-signed certificate under the server root, `data/cert/server.crt` and
`server.key` (mode 0600), made with the `cryptography` package by the cert component on its first
start (or by whichever server needs it first) and made again when it has expired or expires
within RENEW_DAYS. Every server that offers STARTTLS/STLS or an implicit-TLS port builds its
context with `server_context()`; msprobe and tests use `client_context()`, which trusts that
certificate.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fcntl
import hashlib
import os
import re
import socket
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from msgsrv.atomicfile import write_atomic
from msgsrv.paths import DIR_MODE, ServerRoot

VALID_DAYS = 825  # the longest validity clients accept for a server certificate
RENEW_DAYS = 30  # a self-signed certificate this close to its end is made again
MAKE_TIMEOUT = 120.0  # seconds a child making the self-signed pair may take


class TlsError(Exception):
    """The certificate or key cannot be read or made."""


@dataclass(frozen=True)
class CertInfo:
    path: Path
    subject: str  # RFC 4514 form (the last RDN first), e.g. "O=msgsrv self-signed,CN=mail.example.org"
    not_after: datetime.datetime  # UTC
    self_signed: bool
    sha256: str  # fingerprint, hex with colons

    def days_left(self, now: datetime.datetime | None = None) -> int:
        now = now or datetime.datetime.now(datetime.UTC)
        return (self.not_after - now).days


def default_paths(root: ServerRoot) -> tuple[Path, Path]:
    d = root.data_dir / "cert"
    return d / "server.crt", d / "server.key"


def configured(config) -> tuple[str, str]:
    """(local.cert.file, local.cert.key) as set; ('', '') means the self-signed pair."""
    if config is None:
        return "", ""
    return config.get_str("local.cert.file", ""), config.get_str("local.cert.key", "")


def cert_paths(root: ServerRoot, config, make: bool = True) -> tuple[Path, Path]:
    """(certificate, key) in force: the configured pair, else the self-signed one (made if missing
    and MAKE)."""
    cert, key = configured(config)
    if cert or key:
        if not (cert and key):
            raise TlsError("local.cert.file and local.cert.key must both be set, or both be empty")
        return Path(cert), Path(key)
    crt, k = default_paths(root)
    if make and not (crt.exists() and k.exists()):
        _wait_for_maker(crt)  # certd, started together with this server, may be making it
        if crt.exists() and k.exists():
            return crt, k
        if "cryptography.x509" in sys.modules:
            # already imported (certd, renewing its pair): a fork of this process, not a new
            # interpreter (~100 ms). The watcher does not preload it: certd starts together with
            # the first servers and imports it itself, off the start's critical path (issue 14)
            _make_in_fork(root)
        else:
            _make_in_child(root)
    return crt, k


def _lock_path(crt: Path) -> Path:
    """The lock ensure_self_signed holds while it makes the pair (one for every process of a root)."""
    return crt.parent / ".lock"


def _wait_for_maker(crt: Path) -> None:
    """Wait (at most MAKE_TIMEOUT) while another process holds the lock of ensure_self_signed: the
    pair it is making is then there to use, and this server need not make one of its own."""
    try:
        fd = os.open(_lock_path(crt), os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return  # nobody has made or is making one
    try:
        deadline = time.monotonic() + MAKE_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return  # closing the descriptor releases it
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)
            except OSError:
                return
    finally:
        os.close(fd)


def _make_in_child(root: ServerRoot) -> None:
    """ensure_self_signed in a short-lived process: a server that happens to start before certd
    does not keep the cryptography package (~14 MB) in memory for the rest of its life."""
    import subprocess

    code = ("import sys, pathlib; from msgsrv.paths import ServerRoot; from msgsrv.tls import ensure_self_signed; "
            "ensure_self_signed(ServerRoot(pathlib.Path(sys.argv[1])))")
    here = str(Path(__file__).resolve().parent.parent)  # also when msgsrv runs from a checkout, not installed
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p))
    try:
        r = subprocess.run([sys.executable, "-c", code, str(root.base)], capture_output=True, text=True,
                           timeout=MAKE_TIMEOUT, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TlsError(f"unable to make the self-signed certificate: {e}") from None
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise TlsError(f"unable to make the self-signed certificate: {why}")


def ensure_self_signed_apart(root: ServerRoot) -> None:
    """ensure_self_signed, the pair made (when it must be) in a forked child that imports the
    cryptography package itself: certd, which calls this on every start, checks the pair with the
    standard library and never keeps cryptography (~14 MB, issue 14) for the rest of its life.
    The caller has no other thread (one holding a module's import lock at the fork would leave
    the child's import of it waiting forever)."""
    crt, key = default_paths(root)
    if not _fresh(crt, key):
        _make_in_fork(root, preimport=False)


def _make_in_fork(root: ServerRoot, preimport: bool = True) -> None:
    """ensure_self_signed in a forked child of this process, which has cryptography imported
    already (or, not PREIMPORT, which imports it in the child): the key and certificate are made
    without an interpreter start, and the memory they take (OpenSSL's, the builder's modules)
    ends with the child, as for _make_in_child."""
    import ipaddress  # noqa: F401
    import select
    import signal

    if preimport:
        # what the child imports, imported before the fork: a thread of ours that held a module's
        # lock at the fork could not release it in the child (not preloaded by the watcher: only
        # the first server of a new server root needs them, and every cold start would pay for them)
        from cryptography.hazmat.primitives import serialization  # noqa: F401
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: F401
        from cryptography.x509 import oid  # noqa: F401

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: make the pair, say why not on the pipe, never return
        status = 1
        try:
            os.close(r)
            ensure_self_signed(root)
            status = 0
        except BaseException as e:  # noqa: BLE001 - the child must reach os._exit whatever happens
            with contextlib.suppress(BaseException):  # the last line of its traceback, as _make_in_child says
                import traceback

                os.write(w, traceback.format_exception_only(e)[-1].strip().encode("utf-8", "replace"))
        finally:
            os._exit(status)
    os.close(w)
    said = ""
    try:
        with os.fdopen(r, "rb") as f:
            if select.select([f], [], [], MAKE_TIMEOUT)[0]:
                said = f.read().decode("utf-8", "replace")  # until the child's end closes it
            else:
                os.kill(pid, signal.SIGKILL)
                said = f"not made within {MAKE_TIMEOUT:.0f} s"
    finally:
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise TlsError(f"unable to make the self-signed certificate: {said or f'exit status {code}'}")


def certificate_info(path: Path) -> CertInfo:
    """Facts about the (first) PEM certificate at PATH; raises TlsError when it cannot be read.

    Read with the standard library's OpenSSL (ssl), not the cryptography package: certd checks its
    certificate for every change of the files and would otherwise keep cryptography (~14 MB) in
    memory for its whole life only to read a date and a name (issue 14)."""
    try:
        text = Path(path).read_text("ascii", "replace")
    except OSError as e:
        raise TlsError(f"unable to read certificate {path}: {e.strerror or e}") from None
    pem = _PEM.search(text)
    decode = getattr(ssl._ssl, "_test_decode_cert", None)  # noqa: SLF001 - CPython's since 2.7
    try:
        if pem is None:
            raise ValueError("no PEM certificate in the file")
        der = base64.b64decode(pem.group(1), validate=False)
        if decode is None:
            return _certificate_info_cryptography(Path(path), pem.group(0).encode())
        facts = decode(str(path))  # OpenSSL's PEM reader: the first certificate, as the regex
        not_after = datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(facts["notAfter"]), datetime.UTC)
    except (OSError, ValueError, KeyError, ssl.SSLError) as e:
        raise TlsError(f"unable to read certificate {path}: {getattr(e, 'strerror', None) or e}") from None
    return CertInfo(Path(path), rfc4514(facts["subject"]), not_after, facts["issuer"] == facts["subject"],
                    _colons(hashlib.sha256(der).hexdigest()))


def _colons(digest: str) -> str:
    """A hex fingerprint as admins read it: pairs joined with colons."""
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


_PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
# RFC 4514's short names (the ones the cryptography package prints too); other attributes keep
# OpenSSL's name for them (emailAddress, serialNumber, ...)
_SHORT = {"commonName": "CN", "localityName": "L", "stateOrProvinceName": "ST", "organizationName": "O",
          "organizationalUnitName": "OU", "countryName": "C", "streetAddress": "STREET",
          "domainComponent": "DC", "userId": "UID"}


def rfc4514(name: tuple) -> str:
    """A name as ssl decodes it (a tuple of RDNs, each a tuple of (attribute, value)) in RFC 4514
    form: the last RDN first, multi-valued RDNs joined with '+', special characters escaped."""
    return ",".join("+".join(f"{_SHORT.get(k, k)}={_escape(v)}" for k, v in rdn) for rdn in reversed(name))


def _escape(value: str) -> str:
    """RFC 4514 section 2.4."""
    if not value:
        return ""
    for c in '\\"+,;<>':
        value = value.replace(c, "\\" + c)
    value = value.replace("\0", "\\00")
    if value[0] in "# ":
        value = "\\" + value
    if value[-1] == " " and not value.endswith("\\ "):
        value = value[:-1] + "\\ "
    return value


def _certificate_info_cryptography(path: Path, pem: bytes) -> CertInfo:
    """certificate_info with the cryptography package: for an interpreter without ssl's decoder."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(pem)
    return CertInfo(path, cert.subject.rfc4514_string(), cert.not_valid_after_utc,
                    cert.issuer == cert.subject, _colons(cert.fingerprint(hashes.SHA256()).hex()))


def _fresh(crt: Path, key: Path) -> bool:
    """The self-signed pair exists and is not about to expire."""
    if not (crt.exists() and key.exists()):
        return False
    try:
        return certificate_info(crt).days_left() > RENEW_DAYS
    except TlsError:
        return False


def ensure_self_signed(root: ServerRoot, hostname: str | None = None) -> tuple[Path, Path]:
    """Create the suite's self-signed certificate when it is missing, unreadable or near its end.

    Runs under a lock, so servers starting together agree on one certificate.
    """
    crt, key = default_paths(root)
    crt.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    lock = os.open(_lock_path(crt), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _fresh(crt, key):
            return crt, key
        key_pem, cert_pem = _make_self_signed(hostname or socket.gethostname() or "localhost")
        write_atomic(key, key_pem)  # the key first: a new certificate never meets an old key
        write_atomic(crt, cert_pem)
        return crt, key
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)


def _make_self_signed(host: str) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM): P-256, SHA-256, names host, localhost and 127.0.0.1."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pkey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "msgsrv self-signed")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName(h) for h in dict.fromkeys((host, "localhost"))]
    names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    ski = x509.SubjectKeyIdentifier.from_public_key(pkey.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(pkey.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            # its own trust anchor: clients are given this file as their CA (curl --cacert, fetchmail)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(pkey, hashes.SHA256()))
    key_pem = pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


# Server contexts made in this process, by (certificate, key) path, with the files' identity when
# made. The watcher makes them before it forks a built-in server (`warm`), so that a forked server
# finds its context made (issue 14: loading a key costs a restart 3-5 ms); a certificate or key
# replaced since (renewed by certd, or a new local.cert.file) does not match and is loaded again.
_contexts: dict[tuple[Path, Path], tuple[tuple, ssl.SSLContext]] = {}


def _identity(*paths: Path) -> tuple:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def server_context(root: ServerRoot, config) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) with the suite's certificate; raises TlsError."""
    crt, key = cert_paths(root, config)
    try:
        ident = _identity(crt, key)
    except OSError as e:
        raise TlsError(f"unable to load certificate {crt}: {e.strerror or e}") from None
    made = _contexts.get((crt, key))
    if made is not None and made[0] == ident:
        return made[1]
    # No client certificates are asked for, so no CA store is loaded (create_default_context's
    # CLIENT_AUTH purpose would load the system's); PROTOCOL_TLS_SERVER has the same options.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(crt), str(key))
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"unable to load certificate {crt}: {getattr(e, 'strerror', None) or e}") from None
    _contexts[(crt, key)] = (ident, ctx)
    return ctx


def warm(root: ServerRoot, config) -> None:
    """Make the server context ahead, if the certificate in force exists (never makes one: that
    is certd's, or the first server's); errors are the server's to report."""
    with contextlib.suppress(TlsError, OSError):
        crt, key = cert_paths(root, config, make=False)
        if crt.exists() and key.exists():
            server_context(root, config)


def client_context(root: ServerRoot, config=None) -> ssl.SSLContext:
    """A client context that trusts the suite's certificate (for msprobe and tests).

    The certificate in force is a trust anchor of its own (partial chains accepted), so a
    configured certificate from a real CA is verified the same way as the self-signed one.
    """
    crt, _ = cert_paths(root, config)
    try:
        ctx = ssl.create_default_context(cafile=str(crt))
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"unable to load certificate {crt}: {getattr(e, 'strerror', None) or e}") from None
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.check_hostname = False  # probes connect by address; the chain is still verified
    return ctx
