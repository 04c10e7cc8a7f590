"""LoginGuard: the one way the built-in servers check a password (POP USER/PASS, SMTP AUTH, HTTP).

    guard = LoginGuard(service)                        # one per server process
    if await guard.verify(user, password, address):    # the users file, off the event loop
        ...
    else:
        close = await guard.failed(user, address, failures_on_this_connection)

`failed` logs the failure (rate-limited, never the password), waits the growing delay of
authlimit.LoginThrottle for that source address, and says whether the connection has used up its
MAX_PER_CONNECTION attempts and must be closed.
"""

from __future__ import annotations

import asyncio

from msgsrv.services.authlimit import MAX_PER_CONNECTION, FailureLog, LoginThrottle


class LoginGuard:
    def __init__(self, service):
        self.service = service
        self.throttle = LoginThrottle()
        self.failure_log = FailureLog()

    async def verify(self, user: str, password: str, address: str) -> bool:
        """True when USER/PASSWORD are in the users file (scrypt runs in a thread)."""
        from msgsrv.store.users import UserError, Users

        try:
            ok = await asyncio.to_thread(Users(self.service.root).verify, user, password)
        except UserError as e:
            self.service.log(str(e), "Error")
            return False
        if ok:
            self.throttle.succeeded(address)
        return ok

    async def failed(self, user: str, address: str, attempts: int, what: str = "login") -> bool:
        """Log and slow down a failed login; True when the connection must now be closed."""
        delay = self.throttle.failed(address)
        unlogged = self.failure_log.admit()
        if unlogged is not None:
            more = f" ({unlogged} more failures not logged)" if unlogged else ""
            self.service.log(f"{what} failed for {user[:64]!r} from {address}{more}", "Warning")
        await asyncio.sleep(delay)
        return attempts >= MAX_PER_CONNECTION
