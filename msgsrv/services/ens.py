"""EnsService: the event notification service, `enpd` (SPEC §3 "Built-in services").

A line protocol on `local.ens.port` (default 7997, loopback). Publishers send events,
subscribers receive every event whose name starts with one of their patterns (`*` = all). The
dispatcher publishes `newmail <user> <mailbox> <uid>` for each delivered message.

    S: * OK enpd ready
    C: SUBSCRIBE newmail       S: +OK subscribed newmail
    C: UNSUBSCRIBE newmail     S: +OK unsubscribed newmail
    C: PUBLISH newmail alice INBOX 7
                               S: +OK published to <n> subscribers
    (to each matching subscriber, at any time)  S: * EVENT newmail alice INBOX 7
    C: PING                    S: +OK PONG
    C: STATUS                  S: +OK enpd pid=<pid> worker=<n> uptime=<s> subscribers=<n> published=<n>
    C: QUIT                    S: +OK bye

A subscriber that stops reading (more than 1 MiB unsent) is disconnected.
"""

from __future__ import annotations

from msgsrv.services.base import HealthService, HealthSession

MAX_BACKLOG = 1 << 20


class EnsSession(HealthSession):
    def __init__(self, *args):
        super().__init__(*args)
        self.patterns: set[str] = set()

    def wants(self, event: str) -> bool:
        return any(p == "*" or event.startswith(p) for p in self.patterns)

    def status(self) -> str:
        s = self.service
        return f"{super().status()} subscribers={s.subscribers()} published={s.published}"

    async def cmd_SUBSCRIBE(self, tag, rest: str) -> None:
        pattern = rest.strip()
        if not pattern or " " in pattern:
            self.protocol_error(tag, "usage: SUBSCRIBE <event-prefix>|*")
            return
        self.patterns.add(pattern)
        self.send(f"+OK subscribed {pattern}")

    async def cmd_UNSUBSCRIBE(self, tag, rest: str) -> None:
        self.patterns.discard(rest.strip())
        self.send(f"+OK unsubscribed {rest.strip()}")

    async def cmd_PUBLISH(self, tag, rest: str) -> None:
        event, _, data = rest.strip().partition(" ")
        if not event:
            self.protocol_error(tag, "usage: PUBLISH <event> [data]")
            return
        self.send(f"+OK published to {self.service.publish(event, data)} subscribers")


class EnsService(HealthService):
    component = "ens"
    port_parameter = "local.ens.port"
    session_class = EnsSession

    def __init__(self, root):
        super().__init__(root)
        self.published = 0

    def subscribers(self) -> int:
        return sum(1 for s in self.sessions.values() if isinstance(s, EnsSession) and s.patterns)

    def publish(self, event: str, data: str) -> int:
        self.published += 1
        line = f"* EVENT {event} {data}".rstrip()
        n = 0
        for session in list(self.sessions.values()):
            if isinstance(session, EnsSession) and session.wants(event):
                if session.writer.transport.get_write_buffer_size() > MAX_BACKLOG:
                    session.close()
                    continue
                session.send(line)
                n += 1
        return n


SERVICE = EnsService
