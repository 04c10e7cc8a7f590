"""Alarm e-mail, in the original's format (reference §4.3), rate-limited per alarm.

    Subject: ALARM: server response time in seconds of "imap_host_10143" is 10
    From: Postmaster@localhost
    To: Postmaster@localhost

    Server instance: /home/me/.local/share/msgsrv
    Alarmid: serverresponse
    Instance: imap_host_10143
    Description: server response time in seconds
    Current measured value (17/Jul/2001:16:37:08 -0700): 10
    Lowest recorded value: 0
    Highest recorded value: 10
    Monitoring interval: 600 seconds
    Alarm condition is when over threshold of 10
    Number of times over threshold: 1

An alarm (alarm id + instance) is mailed at most once per `alarm.<id>.msgalarmwarninginterval`
hours; the times it was over threshold are counted in data/alarms.json either way. Sending goes
through smtplib to `alarm.msgalarmnoticehost:port`; a failed send is logged, never raised.

With the defaults the mail goes to the suite's own SMTP server (127.0.0.1, `service.smtp.port`)
for postmaster@localhost, which the dispatcher always accepts, so an alarm is delivered on a
fresh machine; `msprobe --test-alarm` sends one to check the path.
"""

from __future__ import annotations

import email.policy
import json
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from msgsrv import logfmt
from msgsrv.atomicfile import locked, write_atomic

# `%s` in order: sender, recipient, description, instance, current value, summary text
DEFAULT_TEMPLATE = "From: %s\nTo: %s\nSubject: ALARM: %s of \"%s\" is %s\n\n%s\n"
SEND_TIMEOUT = 10.0


@dataclass(frozen=True)
class Alarm:
    alarmid: str  # serverresponse | diskavail
    instance: str  # imap_host_10143 | store
    description: str
    value: float
    threshold: float
    direction: int  # 1 = over, -1 = under
    lowest: float
    highest: float
    interval: int  # monitoring interval, seconds
    when: float  # time of the measurement

    @property
    def key(self) -> str:
        return f"{self.alarmid}:{self.instance}"


# -- pure parts -------------------------------------------------------------------------------
def fmt_value(v: float) -> str:
    return str(int(round(v))) if abs(v - round(v)) < 0.005 or abs(v) >= 100 else f"{v:.2f}"


def summary(alarm: Alarm, server_instance: str, times_over: int) -> str:
    side = "under" if alarm.direction < 0 else "over"
    return "\n".join((
        f"Server instance: {server_instance}",
        f"Alarmid: {alarm.alarmid}",
        f"Instance: {alarm.instance}",
        f"Description: {alarm.description}",
        f"Current measured value ({logfmt.stamp(alarm.when)[1:-1]}): {fmt_value(alarm.value)}",
        f"Lowest recorded value: {fmt_value(alarm.lowest)}",
        f"Highest recorded value: {fmt_value(alarm.highest)}",
        f"Monitoring interval: {alarm.interval} seconds",
        f"Alarm condition is when {side} threshold of {fmt_value(alarm.threshold)}",
        f"Number of times {side} threshold: {times_over}",
    ))


def render(alarm: Alarm, sender: str, rcpt: str, server_instance: str, times_over: int,
           template: str = "") -> tuple[dict[str, str], str]:
    """(headers, body) of the alarm mail, from TEMPLATE (`\\n` escapes allowed) or the default."""
    tpl = (template or DEFAULT_TEMPLATE).replace("\\n", "\n")
    args = (sender, rcpt, alarm.description, alarm.instance, fmt_value(alarm.value),
            summary(alarm, server_instance, times_over))
    parts = tpl.split("%s")
    text = parts[0]
    for i, rest in enumerate(parts[1:]):
        text += (args[i] if i < len(args) else "") + rest
    head, sep, body = text.partition("\n\n")
    headers: dict[str, str] = {}
    if sep:
        for line in head.split("\n"):
            name, colon, value = line.partition(":")
            if not colon:
                headers, body = {}, text
                break
            headers[name.strip()] = value.strip()
    else:
        body = text
    return headers, body


def due(last_sent: float | None, now: float, interval_hours: float) -> bool:
    """Mail again only when no mail for this alarm went out in the last INTERVAL_HOURS. A last
    mail more than a minute in the future means the clock was stepped back since: the interval
    cannot be measured, and the alarm is mailed (rather than kept quiet for the step and more)."""
    return last_sent is None or now - last_sent >= interval_hours * 3600.0 or last_sent - now > 60.0


# -- the shell --------------------------------------------------------------------------------
class AlarmState:
    """data/alarms.json: {key: {"last_sent": t, "times_over": n}}; one writer: msprobe."""

    def __init__(self, path):
        self.path = path

    def update(self, key: str, sent: bool | None = None, now: float = 0.0) -> tuple[int, float | None]:
        """Count one more time over threshold; returns (times_over, last_sent) before sending."""
        with locked(self.path.with_name(self.path.name + ".lock")):
            data = self._read()
            entry = data.get(key)
            if not (isinstance(entry, dict) and isinstance(entry.get("times_over"), int)):
                entry = data[key] = {"last_sent": None, "times_over": 0}  # new, or not ours to trust
            if sent is None:
                entry["times_over"] += 1
            elif sent:
                entry["last_sent"] = now
            write_atomic(self.path, json.dumps(data, sort_keys=True))
            return entry["times_over"], entry["last_sent"]

    def _read(self) -> dict:
        """The counts; {} for a missing or damaged file (counting starts again, msprobe goes on)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def send(host: str, port: int, sender: str, rcpt: str, headers: dict[str, str], body: str) -> None:
    """Deliver one mail; raises OSError/smtplib.SMTPException on failure."""
    msg = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))  # RFC 5322 §2.1.1: one-line Subject
    for name, value in headers.items():
        msg[name] = value
    if "From" not in msg:
        msg["From"] = sender
    if "To" not in msg:
        msg["To"] = rcpt
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid("msprobe")
    msg.set_content(body)
    with smtplib.SMTP(host, port, timeout=SEND_TIMEOUT) as s:
        s.send_message(msg, from_addr=sender, to_addrs=[rcpt])


@dataclass(frozen=True)
class Notice:
    """Where alarm mail goes (reference §4.3 parameters, with this suite's defaults)."""

    host: str
    port: int
    sender: str
    rcpt: str
    template: str

    @classmethod
    def from_store(cls, store) -> Notice:
        port = store.get_int("alarm.msgalarmnoticeport", 0) or store.get_int("service.smtp.port", 10025)
        return cls(store.get_str("alarm.msgalarmnoticehost", "") or "127.0.0.1", port,
                   store.get_str("alarm.msgalarmnoticesender", "") or "postmaster@localhost",
                   store.get_str("alarm.msgalarmnoticercpt", "") or "postmaster@localhost",
                   store.get_str("alarm.msgalarmnoticetemplate", ""))


def mail(root, notice: Notice, alarm: Alarm, times_over: int) -> str | None:
    """Send ALARM as NOTICE says; None when sent, else why not (one line)."""
    headers, body = render(alarm, notice.sender, notice.rcpt, str(root.base), times_over, notice.template)
    try:
        send(notice.host, notice.port, notice.sender, notice.rcpt, headers, body)
    except (OSError, smtplib.SMTPException) as e:
        reason = (e.strerror or str(e)).lower() if isinstance(e, OSError) and not isinstance(
            e, smtplib.SMTPException) else _smtp_reason(e)
        return f"unable to send alarm mail to {notice.host}:{notice.port}: {reason or type(e).__name__}"
    return None


def _smtp_reason(e: Exception) -> str:
    """`550 5.1.1 <x@y>: no such user here` rather than a Python tuple."""
    if isinstance(e, smtplib.SMTPRecipientsRefused) and e.recipients:
        code, text = next(iter(e.recipients.values()))
        return f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"
    if isinstance(e, smtplib.SMTPResponseException):
        msg = e.smtp_error.decode("utf-8", "replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
        return f"{e.smtp_code} {msg}"
    return str(e)


def raise_alarm(root, store, alarm: Alarm, now: float) -> str:
    """Count the alarm, mail it unless rate-limited; returns what happened (for the default log)."""
    state = AlarmState(root.data_dir / "alarms.json")
    times_over, last_sent = state.update(alarm.key)
    hours = store.get_float(f"alarm.{alarm.alarmid}.msgalarmwarninginterval", 24.0)
    if not due(last_sent, now, hours):
        return "not mailed (warning interval)"
    notice = Notice.from_store(store)
    failed = mail(root, notice, alarm, times_over)
    if failed:
        return failed
    state.update(alarm.key, sent=True, now=now)
    return f"alarm mail sent to {notice.rcpt}"


def send_test_alarm(root, store, now: float) -> tuple[Notice, str | None]:
    """`msprobe --test-alarm`: one alarm mail now, outside the rate limit and the counts.
    (notice, None) when it was sent, else (notice, why not)."""
    notice = Notice.from_store(store)
    alarm = Alarm("test", "msprobe", "test alarm sent by msprobe --test-alarm", 1.0, 0.0, 1, 1.0, 1.0, 0, now)
    return notice, mail(root, notice, alarm, 1)
