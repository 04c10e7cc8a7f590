"""Users: the users file (`config/users.toml`) with salted scrypt password hashes.

File format, one quoted TOML key per user, written whole and atomically (mode 0600)::

    # msgsrv users: name = "scrypt$<n>$<r>$<p>$<salt base64>$<hash base64>"
    "alice" = "scrypt$16384$8$1$...$..."

Passwords are never stored or logged in plain text. Every write holds an exclusive lock on
`users.toml.lock`, so concurrent `mboxutil` runs never lose an update.

API (used by imapd, popd, the dispatcher and mboxutil)::

    users = Users(root)
    users.add("alice", "secret")        # UserError if the name is taken or not valid
    users.set_password("alice", "new")  # UserError if unknown
    users.verify("alice", "secret")     # -> bool; constant work for unknown users
    users.exists("alice")               # -> bool
    users.list()                        # -> ["alice", ...] sorted
    users.remove("alice")               # UserError if unknown; mailboxes stay (Store.delete_user)
    VerifiedLogins(users).verify("alice", "secret")   # the same, remembering recent successes
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading
import time

from msgsrv.atomicfile import locked, write_atomic
from msgsrv.errors import OperationFailed
from msgsrv.paths import ServerRoot

# scrypt cost: n=2**14, r=8, p=1 (RFC 7914 §2 interactive-login parameters); 16 MiB, ~40 ms
SCRYPT_N, SCRYPT_R, SCRYPT_P = 16384, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
HEADER = '# msgsrv users: name = "scrypt$<n>$<r>$<p>$<salt base64>$<hash base64>"\n'


class UserError(OperationFailed):
    """A users-file operation was refused (unknown user, name taken, invalid name)."""


def valid_name(user: str) -> bool:
    """A user name: letters, digits and . _ @ + -, not starting with a punctuation mark, ≤ 64."""
    return bool(NAME_RE.match(user))


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The stored form of PASSWORD: `scrypt$n$r$p$salt$hash` (base64, no padding issues)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=64 * 1024 * 1024, dklen=HASH_BYTES)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """True when PASSWORD matches the stored form; malformed stored values never match."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=64 * 1024 * 1024, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


# A hash to check against when the user is unknown, so both paths cost the same (timing).
_DUMMY = None


class Users:
    """The users file of one server root."""

    def __init__(self, root: ServerRoot):
        self.path = root.users_file

    # -- reading -------------------------------------------------------------------
    def _read(self) -> dict[str, str]:
        import tomllib

        try:
            with open(self.path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise UserError(f"unable to read {self.path}: {e}") from None
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def list(self) -> list[str]:
        return sorted(self._read())

    def exists(self, user: str) -> bool:
        return user in self._read()

    def verify(self, user: str, password: str) -> bool:
        """True when USER exists and PASSWORD is theirs. Costs one scrypt either way."""
        global _DUMMY
        stored = self._read().get(user)
        if stored is None:
            if _DUMMY is None:
                _DUMMY = hash_password("")
            check_password(password, _DUMMY)
            return False
        return check_password(password, stored)

    # -- writing (locked, atomic, 0600) -----------------------------------------------
    def _write(self, users: dict[str, str]) -> None:
        lines = [HEADER] + [f'"{name}" = "{users[name]}"\n' for name in sorted(users)]
        write_atomic(self.path, "".join(lines), mode=0o600)

    def _change(self, user: str, password: str | None, *, must_exist: bool | None) -> None:
        if not valid_name(user):
            raise UserError(f"invalid user name {user!r}: use letters, digits and . _ @ + -")
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked(self.path.with_name(self.path.name + ".lock")):
            users = self._read()
            if must_exist is True and user not in users:
                raise UserError(f"unknown user {user!r}")
            if must_exist is False and user in users:
                raise UserError(f"user {user!r} already exists")
            if password is None:
                del users[user]
            else:
                users[user] = hash_password(password)
            self._write(users)

    def add(self, user: str, password: str) -> None:
        """Create USER with PASSWORD; UserError if the name is taken or not valid."""
        self._change(user, password, must_exist=False)

    def set_password(self, user: str, password: str) -> None:
        """Replace the password of an existing USER."""
        self._change(user, password, must_exist=True)

    def remove(self, user: str) -> None:
        """Remove USER from the users file (their mailboxes are left to Store.delete_user)."""
        self._change(user, None, must_exist=True)


class VerifiedLogins:
    """Users.verify with a memory of recent successes, for servers whose clients log in again and
    again (mail clients polling, imaptest): one scrypt per user and password per TTL instead of one
    per login. Only successes are kept, as HMACs under a key made at start (never the password),
    and all of them are forgotten when users.toml changes. Safe to call from threads."""

    TTL = 600.0  # seconds
    SIZE = 1024  # entries

    def __init__(self, users: Users):
        self.users = users
        self._key = os.urandom(32)
        self._seen: dict[bytes, float] = {}
        self._stamp: tuple = ()
        self._lock = threading.Lock()

    def _file_stamp(self) -> tuple:
        try:
            st = os.stat(self.users.path)
            return (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            return ()

    def verify(self, user: str, password: str) -> bool:
        key = hmac.new(self._key, user.encode("utf-8", "surrogateescape") + b"\0"
                       + password.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
        stamp = self._file_stamp()
        now = time.monotonic()
        with self._lock:
            if stamp != self._stamp:
                self._seen.clear()
                self._stamp = stamp
            if self._seen.get(key, 0.0) > now:
                return True
        if not self.users.verify(user, password):
            return False
        with self._lock:
            if len(self._seen) >= self.SIZE:
                self._seen.clear()
            if self._stamp == stamp:
                self._seen[key] = now + self.TTL
        return True
