"""CertService: the certificate server, `certd` (SPEC §3 "Built-in services", issue 13 "TLS").

certd owns the suite's TLS certificate (msgsrv/tls.py). On start it makes the self-signed
certificate under `data/cert/` when `local.cert.file`/`local.cert.key` name none and it is
missing or near its end, so the servers started after it find one. It answers the health line
protocol on `local.cert.port` (default 10444, loopback), and its greeting says whether the
certificate in force can be used, which is what msprobe's cert probe checks:

    S: * OK certd ready                         (the certificate and key load and are in date)
    S: -ERR certificate problem: <reason>      (missing, unreadable, key mismatch, expired)
    C: PING            S: +OK PONG
    C: STATUS          S: +OK certd pid=<pid> worker=<n> uptime=<s> cert=<path> subject=<dn>
                              expires=<yyyy-mm-dd> days=<n> sha256=<fingerprint>
    C: QUIT            S: +OK bye

The certificate is checked again for each connection (cached while its files do not change), so
a certificate replaced or expired while certd runs is seen by the next probe.
"""

from __future__ import annotations

import os

from msgsrv import tls
from msgsrv.services.base import HealthService, HealthSession
from msgsrv.watcher import prefork


class CertSession(HealthSession):
    async def greet(self) -> None:
        problem = self.service.problem()
        if problem:
            self.send(f"-ERR certificate problem: {problem}")
            self.done = True
            return
        await super().greet()

    def status(self) -> str:
        info = self.service.info
        facts = f" cert={info.path} subject={info.subject.replace(' ', '_')}" if info else ""
        if info:
            facts += f" expires={info.not_after:%Y-%m-%d} days={info.days_left()} sha256={info.sha256}"
        return super().status() + facts


class CertService(HealthService):
    component = "cert"
    port_parameter = "local.cert.port"
    session_class = CertSession

    def __init__(self, root):
        super().__init__(root)
        self.info: tls.CertInfo | None = None
        self._checked: tuple | None = None  # (cert stat, key stat) of the last check
        self._problem = ""

    async def bind(self) -> None:
        # issue 13: the cert component creates the suite's certificate on first start, before it
        # accepts connections (so a client of its port finds the certificate made)
        if not any(tls.configured(self.config)):
            # made (when missing or near its end) in a fork that imports cryptography itself: certd
            # checks the pair with the standard library and never keeps that package (issue 14).
            # The fork is made once this server's only other thread, the cgroup join, is done.
            await prefork.cgroup_joined_soon()
            tls.ensure_self_signed_apart(self.root)
        problem = self.problem()
        if problem:
            self.log(f"certificate problem: {problem}", "Error")
        await super().bind()

    def problem(self) -> str:
        """'' when the certificate in force is usable, else the reason (naming the file)."""
        try:
            crt, key = tls.cert_paths(self.root, self.config)
        except tls.TlsError as e:
            return str(e)
        try:
            seen = (_ident(crt), _ident(key))
        except OSError as e:
            return f"{e.filename}: {(e.strerror or str(e)).lower()}"
        if seen != self._checked:
            self._checked, self._problem, self.info = seen, "", None
            try:
                tls.server_context(self.root, self.config)  # loads both: a key that does not match fails here
                self.info = tls.certificate_info(crt)
            except tls.TlsError as e:
                self._problem = str(e)
        if self._problem:
            return self._problem
        if self.info.days_left() < 0:
            return f"{crt}: expired on {self.info.not_after:%Y-%m-%d}"
        return ""


def _ident(path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


SERVICE = CertService
