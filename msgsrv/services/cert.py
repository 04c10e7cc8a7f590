"""CertService: the certificate server, `certd` (SPEC §3 "Built-in services").

A port that answers the health line protocol on `local.cert.port` (default 10444, loopback):

    S: * OK certd ready
    C: PING            S: +OK PONG
    C: STATUS          S: +OK certd pid=<pid> worker=<n> uptime=<s>
    C: QUIT            S: +OK bye
"""

from __future__ import annotations

from msgsrv.services.base import HealthService


class CertService(HealthService):
    component = "cert"
    port_parameter = "local.cert.port"


SERVICE = CertService
