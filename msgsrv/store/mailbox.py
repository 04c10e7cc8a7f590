"""Store: the on-disk message store under `data/store/` (SPEC §3 "Built-in services").

Layout, maildir-like (one folder per user and mailbox; directories 0700, files 0600)::

    data/store/<user>/<mailbox>/
        tmp/                          deliveries being written
        cur/<uid>,S=<size>:2,<flags>  one file per message (Maildir++ size, Maildir flags)
        uidvalidity                   decimal, written once when the mailbox is created
        uidnext                       decimal, next UID; also the mailbox lock (flock)

Mailbox names are percent-encoded into one directory name ("Sent Items" -> "Sent%20Items",
"a/b" -> "a%2Fb"); `INBOX` is case-insensitive (RFC 3501 §5.1). Messages are stored with CRLF
line ends, so sizes are the octet counts IMAP and POP send.

Delivery is atomic: the message is written and fsynced under `tmp/`, then, holding the mailbox
lock, renamed into `cur/` under the next UID. A reader sees a whole message or none. Flags are
changed by renaming the file (Maildir letters: D=\\Draft F=\\Flagged R=\\Answered S=\\Seen
T=\\Deleted), expunge unlinks the files marked T.

API (used by imapd, popd, the dispatcher and mboxutil)::

    store = Store(root)
    store.mailboxes("alice")                    # -> ["INBOX", "Sent", ...]
    store.create("alice", "Sent")               # MailboxError if it exists
    store.delete("alice", "Sent")               # MailboxError for INBOX or unknown
    uid = store.deliver("alice", b"...")        # into INBOX (created on first delivery)
    store.messages("alice", "INBOX")            # -> [Message(uid, size, flags, path), ...]
    box = store.mailbox("alice", "INBOX")       # a Mailbox: messages(), message(uid), read(uid),
                                                #   set_flags(), expunge(), remove(uids),
                                                #   uidvalidity, uidnext
    store.users()                               # user names that have a store folder
    store.delete_user("alice")                  # every mailbox of the user
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from msgsrv.errors import OperationFailed
from msgsrv.paths import ServerRoot
from msgsrv.store.users import valid_name

INBOX = "INBOX"
FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
LETTER_FLAGS = {v: k for k, v in FLAG_LETTERS.items()}
SYSTEM_FLAGS = frozenset(FLAG_LETTERS)
_counter = itertools.count()


class MailboxError(OperationFailed):
    """A store operation was refused (unknown or invalid user or mailbox, INBOX not deletable)."""


@dataclass(frozen=True)
class Message:
    uid: int
    size: int
    flags: frozenset[str]
    path: Path

    @property
    def deleted(self) -> bool:
        return "\\Deleted" in self.flags


def canonical(mbox: str) -> str:
    """RFC 3501 §5.1: INBOX in any case is INBOX; other names are kept as given."""
    return INBOX if mbox.upper() == INBOX else mbox


def _dir_name(mbox: str) -> str:
    mbox = canonical(mbox)
    if not mbox or mbox in (".", "..") or any(ord(ch) < 32 or ord(ch) == 127 for ch in mbox) or len(mbox) > 200:
        raise MailboxError(f"invalid mailbox name {mbox!r}")
    return quote(mbox, safe="")


def normalize_crlf(data: bytes) -> bytes:
    """Every line end as CRLF (RFC 5322 §2.3), the form IMAP and POP send."""
    if b"\n" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _file_name(uid: int, size: int, flags: frozenset[str]) -> str:
    letters = "".join(sorted(FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS))
    return f"{uid},S={size}:2,{letters}"


def _parse_name(name: str) -> tuple[int, int, frozenset[str]] | None:
    try:
        head, _, letters = name.partition(":2,")
        uid_text, _, size_text = head.partition(",S=")
        return int(uid_text), int(size_text), frozenset(LETTER_FLAGS[c] for c in letters if c in LETTER_FLAGS)
    except ValueError:
        return None


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)  # RFC 5321 §6.1: once accepted, a message must not be lost
    finally:
        os.close(fd)


class Mailbox:
    """One mailbox folder. Reading needs no lock; UID allocation and flag changes take it."""

    def __init__(self, path: Path, name: str):
        self.path = path
        self.name = name
        self._names: dict[int, str] = {}  # uid -> current file name, refreshed by messages()

    @property
    def cur(self) -> Path:
        return self.path / "cur"

    def exists(self) -> bool:
        return (self.path / "cur").is_dir()

    def ensure(self) -> Mailbox:
        """Create the folder (idempotent); a new mailbox gets a UIDVALIDITY (RFC 3501 §2.3.1.1)."""
        if self.exists():
            return self
        self.path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (self.path.parent, self.path, self.path / "tmp", self.path / "cur"):
            d.mkdir(mode=0o700, exist_ok=True)  # each level 0700, whatever the umask
        validity = self.path / "uidvalidity"
        try:
            fd = os.open(validity, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return self
        with os.fdopen(fd, "w") as f:
            f.write(f"{int(time.time())}\n")
        return self

    @property
    def uidvalidity(self) -> int:
        try:
            return int((self.path / "uidvalidity").read_text().strip() or 1)
        except (OSError, ValueError):
            return 1

    @property
    def uidnext(self) -> int:
        try:
            text = (self.path / "uidnext").read_text().strip()
            return max(int(text), self._max_uid() + 1) if text else self._max_uid() + 1
        except (OSError, ValueError):
            return self._max_uid() + 1

    def _max_uid(self) -> int:
        return max((m.uid for m in self.messages()), default=0)

    # -- reading -------------------------------------------------------------------
    def messages(self) -> list[Message]:
        """Messages in UID order (ascending), read from the directory now."""
        try:
            names = os.listdir(self.cur)
        except FileNotFoundError:
            raise MailboxError(f"no such mailbox {self.name!r}") from None
        out = []
        self._names = {}
        for name in names:
            parsed = _parse_name(name)
            if parsed is not None:
                uid, size, flags = parsed
                self._names[uid] = name
                out.append(Message(uid, size, flags, self.cur / name))
        out.sort(key=lambda m: m.uid)
        return out

    def _path(self, uid: int) -> Path:
        name = self._names.get(uid)
        if name is None:
            self.messages()
            name = self._names.get(uid)
            if name is None:
                raise MailboxError(f"no message with UID {uid} in {self.name!r}")
        return self.cur / name

    def message(self, uid: int) -> Message:
        """The Message with UID, from the last listing (re-listed when UID is not in it)."""
        path = self._path(uid)
        _, size, flags = _parse_name(path.name)
        return Message(uid, size, flags, path)

    def read(self, uid: int) -> bytes:
        """The message with UID (its file may have been renamed by a flag change meanwhile)."""
        for _ in range(3):
            try:
                return self._path(uid).read_bytes()
            except FileNotFoundError:
                self._names.pop(uid, None)
        raise MailboxError(f"no message with UID {uid} in {self.name!r}")

    # -- writing -------------------------------------------------------------------
    def _lock(self) -> int:
        fd = os.open(self.path / "uidnext", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def deliver(self, data: bytes, flags: frozenset[str] = frozenset()) -> int:
        """Store DATA (line ends made CRLF) as a new message; returns its UID."""
        data = normalize_crlf(data)
        self.ensure()
        tmp = self.path / "tmp" / f"{time.time_ns()}.{os.getpid()}.{next(_counter)}"
        _write_file(tmp, data)
        fd = self._lock()
        try:
            text = os.pread(fd, 32, 0).strip()
            uid = int(text) if text.isdigit() else self._max_uid() + 1
            name = _file_name(uid, len(data), flags)
            os.rename(tmp, self.cur / name)
            nxt = f"{uid + 1}\n".encode()
            os.pwrite(fd, nxt, 0)
            os.ftruncate(fd, len(nxt))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)  # releases the lock
        self._names[uid] = name
        return uid

    def set_flags(self, uid: int, add: frozenset[str] = frozenset(), remove: frozenset[str] = frozenset(),
                  replace: frozenset[str] | None = None) -> frozenset[str]:
        """Change the flags of UID (system flags only are kept); returns the new flags."""
        fd = self._lock()
        try:
            for _ in range(3):
                path = self._path(uid)
                parsed = _parse_name(path.name)
                if parsed is None:
                    break
                _, size, flags = parsed
                new = (replace if replace is not None else (flags | add) - remove) & SYSTEM_FLAGS
                name = _file_name(uid, size, new)
                if name == path.name:
                    return new
                try:
                    os.rename(path, self.cur / name)
                except FileNotFoundError:
                    self._names.pop(uid, None)
                    continue
                self._names[uid] = name
                return new
        finally:
            os.close(fd)
        raise MailboxError(f"no message with UID {uid} in {self.name!r}")

    def remove(self, uids: list[int] | set[int]) -> list[int]:
        """Remove the messages with these UIDs now; returns the UIDs actually removed."""
        gone = []
        for uid in sorted(uids):
            try:
                self._path(uid).unlink()
                gone.append(uid)
            except (FileNotFoundError, MailboxError):
                pass
            self._names.pop(uid, None)
        return gone

    def expunge(self) -> list[int]:
        """RFC 3501 §6.4.3: remove every message flagged \\Deleted; returns their UIDs."""
        return self.remove([m.uid for m in self.messages() if m.deleted])


class Store:
    """The message store of one server root (`root.store_dir`)."""

    def __init__(self, root: ServerRoot):
        self.base = root.store_dir

    def _user_dir(self, user: str) -> Path:
        if not valid_name(user):
            raise MailboxError(f"invalid user name {user!r}")
        return self.base / user

    def mailbox(self, user: str, mbox: str = INBOX) -> Mailbox:
        """The Mailbox object for USER/MBOX (it need not exist yet: see Mailbox.exists)."""
        return Mailbox(self._user_dir(user) / _dir_name(mbox), canonical(mbox))

    def users(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.base) if valid_name(n) and (self.base / n).is_dir())
        except FileNotFoundError:
            return []

    def mailboxes(self, user: str) -> list[str]:
        """USER's mailbox names, INBOX first, then sorted."""
        try:
            names = [unquote(n) for n in os.listdir(self._user_dir(user))
                     if (self._user_dir(user) / n / "cur").is_dir()]
        except FileNotFoundError:
            return []
        return sorted(names, key=lambda n: (n != INBOX, n))

    def create(self, user: str, mbox: str) -> Mailbox:
        box = self.mailbox(user, mbox)
        if box.exists():
            raise MailboxError(f"mailbox {box.name!r} of {user!r} already exists")
        return box.ensure()

    def delete(self, user: str, mbox: str) -> None:
        """RFC 3501 §6.3.4: INBOX cannot be deleted."""
        box = self.mailbox(user, mbox)
        if box.name == INBOX:
            raise MailboxError("INBOX cannot be deleted")
        if not box.exists():
            raise MailboxError(f"no mailbox {box.name!r} for {user!r}")
        shutil.rmtree(box.path)

    def delete_user(self, user: str) -> None:
        shutil.rmtree(self._user_dir(user), ignore_errors=True)

    def deliver(self, user: str, data: bytes, mbox: str = INBOX) -> int:
        """Deliver DATA to USER's MBOX (created when missing); returns the new UID."""
        return self.mailbox(user, mbox).deliver(data)

    def messages(self, user: str, mbox: str = INBOX) -> list[Message]:
        return self.mailbox(user, mbox).messages()
