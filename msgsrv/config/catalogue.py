"""The parameter catalogue: every name that may be set, its type, default, refreshability and,
for numbers, the range a value must lie in.

Data plus pure functions. Imported on the hot `configutil -o NAME` path, so it imports nothing
heavy: exact names are a dict lookup, patterns (`local.probe.<svc>.timeout`) a segment match.
"""

from __future__ import annotations

from collections import namedtuple

# A namedtuple, not a dataclass: `import dataclasses` alone costs ~8 ms of the fast path's start-up.
_Row = namedtuple("_Row", "name type default refreshable doc lo hi", defaults=(None, None))


class Parameter(_Row):
    """name: exact name, or a pattern with one <placeholder> segment; type: a key of TYPE_NAMES;
    default: as text, None = no default (unset); refreshable: bool; doc: one line;
    lo, hi: the inclusive range of a number (None: only the type's own limits)."""

    __slots__ = ()

    @property
    def is_pattern(self) -> bool:
        return "<" in self.name

    @property
    def range_text(self) -> str:
        """`1-64`, `0.01-3600`; "" when the row has no range of its own."""
        if self.lo is None and self.hi is None:
            return ""
        return f"{_num(self.lo)}-{_num(self.hi)}"


def _num(x) -> str:
    if x is None:
        return ""
    if isinstance(x, int):
        return str(x)
    return str(int(x)) if x == int(x) else f"{x:g}"


R, N = True, False  # refreshable / not refreshable
DAY = 86400
# seconds, at most an hour: a timeout of 0 would make every server hung, one under 0.1 s makes a
# loaded machine's servers look hung; a threshold or a stop grace may be as short as 10 ms
TIMEOUT = (0.1, 3600)
SHORT = (0.01, 3600)

_ROWS: tuple[tuple, ...] = (
    # -- watcher and restart policy (SPEC §1, reference §4.2, §5)
    ("local.watcher.enable", "boolean", "yes", N, "Start the watcher with start-msg; it detects and logs failures"),
    ("local.watcher.port", "port", "49994", N, "Loopback port of the watcher's control protocol"),
    ("local.watcher.metricsport", "port_or_off", "0", N, "Loopback port for Prometheus metrics from the watcher (0 = off)"),
    ("local.watcher.httpport", "port_or_off", "49995", N, "Port of the watcher's web console (0 = off)"),
    ("local.watcher.httpaddr", "host", "127.0.0.1", N,
     "Address the web console binds (default loopback only; anything else needs a TLS proxy in front)"),
    ("local.watcher.calltimeout", "duration", "5", R,
     "Seconds a command waits for the watcher to answer before saying it is not answering", *SHORT),
    ("local.watcher.cgroups", "boolean", "yes", N,
     "Run each server in its own cgroup v2 where the watcher may create cgroups (else process groups)"),
    ("local.watcher.prefork", "boolean", "yes", R,
     "Start built-in servers by forking the watcher's preloaded image (no): exec a new interpreter each time"),
    ("local.autorestart", "boolean", "no", R, "Restart failed or hung servers automatically"),
    ("local.autorestart.timeout", "duration", "600", R,
     "Restart window in seconds: a third failure inside it gives up (at least the msprobe interval)", 1, 366 * DAY),
    # -- scheduler
    ("local.schedule.msprobe", "probe_schedule", "5,15,25,35,45,55 * * * * lib/msprobe", R,
     "When imsched runs msprobe: 5 crontab fields and a command, or seconds (and a command)"),
    ("local.schedule.msprobe.enable", "boolean", "yes", R, "Set to no to stop scheduling msprobe"),
    ("local.schedule.<task>", "schedule", None, R, "A task run by imsched: crontab fields or seconds, then the command"),
    ("local.schedule.<task>.enable", "boolean", "yes", R, "Set to no to stop scheduling this task"),
    # -- msprobe
    ("service.readtimeout", "duration", "10", R, "Seconds without a response before a server counts as hung",
     *TIMEOUT),
    ("local.probe.warningthreshold", "duration", "5", R, "Response time in seconds above which msprobe warns",
     *SHORT),
    ("local.probe.<svc>.timeout", "duration", None, R, "Probe timeout for one service (default: service.readtimeout)",
     *TIMEOUT),
    ("local.probe.<svc>.warningthreshold", "duration", None, R,
     "Warning threshold for one service (default: local.probe.warningthreshold)", *SHORT),
    ("local.probe.<svc>.enable", "boolean", "yes", R,
     "Set to no to leave one service out of scheduled msprobe passes (e.g. lmtp in front of Postfix)"),
    ("local.probe.watcher.enable", "boolean", "yes", R,
     "msprobe checks that the watcher answers, and launches a dead or hung one again (local.autorestart)"),
    ("local.probe.watcher.timeout", "duration", None, R,
     "Time the watcher has to answer msprobe (default: service.readtimeout)", *TIMEOUT),
    ("local.probe.history.days", "integer", "30", R, "Days of response-time history msprobe keeps", 1, 3650),
    ("local.queuedir", "string", "", R, "MTA queue directory checked for free space (default: data/queue)"),
    ("local.defdomain", "host", "", R, "Default mail domain"),
    # -- components: enable switches, ports, workers, commands
    ("local.store.enable", "boolean", "yes", N, "Run the message store (stored) and its services"),
    ("local.store.port", "port", "10999", N, "Status port of the store daemon (stored)"),
    ("service.imap.enable", "boolean", "yes", N, "Run the IMAP server (imapd)"),
    ("service.imap.port", "port", "10143", N, "IMAP port"),
    ("service.pop.enable", "boolean", "yes", N, "Run the POP server (popd)"),
    ("service.pop.port", "port", "10110", N, "POP3 port"),
    ("service.http.enable", "boolean", "yes", N, "Run the HTTP server (mshttpd)"),
    ("service.http.port", "port", "10080", N, "HTTP port"),
    ("service.listenaddr", "host", "", N,
     "Address the IMAP, POP, HTTP, SMTP/LMTP and MMP listeners bind (empty: 127.0.0.1 only)"),
    ("service.<svc>.numprocesses", "integer", "1", N, "Worker processes of a server (imap, pop, http)", 1, 256),
    ("service.smtp.port", "port", "10025", N, "SMTP port of the dispatcher"),
    ("service.lmtp.port", "port", "10024", N, "LMTP port of the dispatcher"),
    ("local.imta.enable", "boolean", "yes", N, "Run the MTA: dispatcher (SMTP, LMTP) and job_controller"),
    ("local.job_controller.port", "port", "27442", N, "Port of the job controller"),
    ("local.ens.enable", "boolean", "yes", N, "Run the event notification service (enpd)"),
    ("local.ens.port", "port", "7997", N, "Port of the event notification service"),
    ("local.sched.enable", "boolean", "yes", N, "Run the scheduler (imsched)"),
    ("local.sched.port", "port", "10998", N, "Health port of the scheduler"),
    ("local.cert.enable", "boolean", "yes", N, "Run the certificate server"),
    ("local.cert.port", "port", "10444", N, "Port of the certificate server"),
    ("local.cert.file", "string", "", N,
     "PEM certificate for every TLS listener (empty: a self-signed one under data/cert/)"),
    ("local.cert.key", "string", "", N, "PEM private key of local.cert.file"),
    ("service.imap.sslport", "port", "10993", N, "IMAP over implicit TLS (IMAPS) port"),
    ("service.pop.sslport", "port", "10995", N, "POP3 over implicit TLS (POP3S) port"),
    ("service.http.sslport", "port", "10443", N, "HTTPS port"),
    ("local.requiretls", "boolean", "no", N,
     "Refuse LOGIN, USER/PASS and AUTH on connections without TLS (STARTTLS first)"),
    ("service.imap.enablesslport", "boolean", "yes", N, "Listen on service.imap.sslport (IMAPS)"),
    ("service.pop.enablesslport", "boolean", "yes", N, "Listen on service.pop.sslport (POP3S)"),
    ("service.http.enablesslport", "boolean", "yes", N, "Listen on service.http.sslport (HTTPS)"),
    ("service.smtp.sslport", "port", "10465", N, "SMTP submission over implicit TLS (SMTPS, AUTH required) port"),
    ("service.smtp.enablesslport", "boolean", "yes", N, "Listen on service.smtp.sslport (SMTPS submission)"),
    ("service.defaultdomain", "string", "", R,
     "Mail domain of the local users (empty: the host name); other recipient domains are refused"),
    ("local.domains", "string", "", R,
     "More mail domains delivered to local users, separated by spaces or commas"),
    ("local.mmp.enable", "boolean", "no", N, "Run the IMAP/POP proxy (mmp)"),
    ("local.mmp.imapport", "port", "17143", N, "IMAP port of the proxy"),
    ("local.mmp.popport", "port", "17110", N, "POP port of the proxy"),
    ("local.<component>.command", "string", "", N,
     "Run this command instead of the built-in server (e.g. a Dovecot command line)"),
    ("local.<component>.stoptimeout", "duration", "5", R,
     "Seconds a server may take to exit after SIGTERM before it is killed", *SHORT),
    ("local.<component>.starttimeout", "duration", "10", R, "Seconds a server may take to start accepting",
     *TIMEOUT),
    ("local.<component>.ready", "readiness", "port", R,
     "When a local.<component>.command counts as RUNNING: port (its port accepts) or started (spawned, "
     "no exit within 20 ms; for a command that listens on no port)"),
    ("local.<component>.hungstoptimeout", "duration", "0.5", R,
     "Seconds a server reported hung by msprobe gets after SIGTERM before it is killed", *SHORT),
    # -- alarms (reference §4.3)
    ("alarm.msgalarmnoticehost", "host", "127.0.0.1", R, "SMTP host that alarm mail is sent to"),
    ("alarm.msgalarmnoticeport", "port", "", R,
     "SMTP port that alarm mail is sent to (empty: service.smtp.port, the suite's own SMTP server)"),
    ("alarm.msgalarmnoticercpt", "string", "postmaster@localhost", R, "Recipient of alarm mail"),
    ("alarm.msgalarmnoticesender", "string", "postmaster@localhost", R, "Sender of alarm mail"),
    ("alarm.msgalarmnoticetemplate", "string", "", R, "Alarm mail template (empty: the built-in one)"),
    ("alarm.diskavail.msgalarmdescription", "string", "percentage mail partition diskspace available", R,
     "Description of the disk alarm"),
    ("alarm.diskavail.msgalarmstatinterval", "integer", "3600", R, "Seconds between disk checks (0 = off)",
     0, 7 * DAY),
    ("alarm.diskavail.msgalarmthreshold", "integer", "10", R, "Free disk percent below which the alarm fires",
     0, 100),
    ("alarm.diskavail.msgalarmthresholddirection", "direction", "-1", R, "-1: alarm when below, 1: when above"),
    ("alarm.diskavail.msgalarmwarninginterval", "integer", "24", R, "Hours between two disk alarm mails", 0, 8760),
    ("alarm.serverresponse.msgalarmdescription", "string", "server response time in seconds", R,
     "Description of the response-time alarm"),
    ("alarm.serverresponse.msgalarmstatinterval", "integer", "600", R,
     "Seconds between response checks (0 = off)", 0, 7 * DAY),
    ("alarm.serverresponse.msgalarmthreshold", "integer", "10", R, "Response seconds above which the alarm fires",
     0, 3600),
    ("alarm.serverresponse.msgalarmthresholddirection", "direction", "1", R, "-1: alarm when below, 1: when above"),
    ("alarm.serverresponse.msgalarmwarninginterval", "integer", "24", R,
     "Hours between two response-time alarm mails", 0, 8760),
)

PARAMETERS: tuple[Parameter, ...] = tuple(Parameter(*row) for row in _ROWS)
EXACT: dict[str, Parameter] = {p.name: p for p in PARAMETERS if not p.is_pattern}
PATTERNS: tuple[Parameter, ...] = tuple(p for p in PARAMETERS if p.is_pattern)

# What a placeholder may stand for. <task>: any name made of letters, digits, '_' and '-'.
SERVICES = ("imap", "pop", "http", "cert", "job_controller", "smtp", "lmtp", "mmp", "ens", "store", "sched",
            "imaps", "pops", "https", "smtps")
COMPONENT_NAMES = ("ens", "store", "imap", "pop", "cert", "http", "sched", "dispatcher", "job_controller", "mmp")
_PLACEHOLDER_VALUES = {
    "<svc>": SERVICES,
    "<component>": COMPONENT_NAMES,
}


def _word_ok(word: str) -> bool:
    return bool(word) and all(ch.isalnum() or ch in "_-" for ch in word)


def _match(pattern: str, name: str) -> bool:
    p, n = pattern.split("."), name.split(".")
    if len(p) != len(n):
        return False
    for ps, ns in zip(p, n, strict=True):
        if ps.startswith("<"):
            allowed = _PLACEHOLDER_VALUES.get(ps)
            if allowed is not None and ns not in allowed:
                return False
            if allowed is None and (not _word_ok(ns) or ns == "enable"):
                return False
        elif ps != ns:
            return False
    return True


def lookup(name: str) -> Parameter | None:
    """The catalogue row for NAME (exact names first, then patterns), or None."""
    p = EXACT.get(name)
    if p is not None:
        return p
    for p in PATTERNS:
        if _match(p.name, name):
            return p
    return None


def suggest(name: str) -> str | None:
    """The closest known name, for `did you mean`."""
    import difflib

    candidates = list(EXACT)
    for p in PATTERNS:
        for ph, values in _PLACEHOLDER_VALUES.items():
            if ph in p.name:
                candidates += [p.name.replace(ph, v) for v in values]
    best = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return best[0] if best else None


def parse(param: Parameter, text: str):
    """Typed value of TEXT for PARAM; ValueError when it does not parse or lies outside the row's
    range. Every reader goes through here (ConfigStore.value), so a hand-written out-of-range
    value falls back to the default instead of reaching a server."""
    from msgsrv.config.types import convert

    value = convert(param.type, text)
    if (param.lo is not None and value < param.lo) or (param.hi is not None and value > param.hi):
        n = _num(value)
        raise ValueError(f"{n if len(n) <= 30 else n[:30] + '...'} is out of range ({param.range_text})")
    return value


TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "a boolean (yes/no, on/off, 1/0)",
    "port": "a port number (1-65535)",
    "port_or_off": "a port number (1-65535), or 0 for off",
    "duration": "a number of seconds",
    "direction": "-1 (alarm below the threshold) or 1 (above)",
    "readiness": "port or started",
    "host": "an IP address or a host name",
    "schedule": "a schedule (5 crontab fields and a command, or seconds and a command)",
    "probe_schedule": "a schedule (5 crontab fields and a command, or seconds and an optional command)",
}


def describe(param: Parameter) -> str:
    """The type and range of PARAM in a few words, for `configutil -H -m`: `integer 1-64`."""
    return f"{param.type} {param.range_text}" if param.range_text else param.type
