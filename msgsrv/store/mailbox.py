"""Store: the message store under `data/store/`, kept as standard Maildir++ (SPEC §4 "Store").

Layout (directories 0700, files 0600), the one Dovecot reads with `mail_location =
maildir:<server root>/data/store/%u`, so either server can serve the same mailboxes::

    data/store/<user>/                the user's INBOX and the root of their folders
        cur/ new/ tmp/                messages (file names: msgsrv/store/maildirname.py)
        dovecot-uidlist               UIDs and UIDVALIDITY (msgsrv/store/uidlist.py)
        dovecot-keywords              keyword letters a-z
        dovecot-uidvalidity           the last UIDVALIDITY handed out for this user (hex)
        subscriptions                 subscribed mailbox names, one per line
        msgsrv-recent                 the first UID still \\Recent (msgsrv's own; Dovecot ignores it)
        msgsrv-lock, msgsrv-userlock  flock targets (mailbox lock, user lock)
        .Sent/  .Sent.2024/           folder "Sent" and its child "Sent.2024" (maildirfolder marker)

The hierarchy delimiter is `.` (Dovecot's and Courier's for Maildir++); a `/` given to this API is
taken as the delimiter too, so `mboxutil -c user/alice/a/b` makes `a.b`. INBOX is case-insensitive
(RFC 3501 §5.1). Messages are stored with CRLF line ends, so sizes are the octets IMAP and POP send.

Delivery is atomic and durable: the message is written and fsynced under `tmp/`, then, holding the
mailbox lock, renamed into `new/` (or `cur/` when it has flags) and its UID appended to
dovecot-uidlist. A reader sees a whole message or none; a kill between the rename and the UID record
leaves a message that the next reader numbers, so nothing accepted is lost. (The directories are not
fsynced per message: that halved the delivery rate; the rename reaches the disk with the file
system's next journal commit, at the latest with the next delivery's fsync.) Flags
live in the file name (renames), expunge unlinks, and a UIDVALIDITY is never handed out twice for
a user, so a name re-created after DELETE never repeats one (RFC 3501 §2.3.1.1).

API (used by imapd, popd, the dispatcher and mboxutil)::

    store = Store(root)
    store.mailboxes("alice")                    # -> ["INBOX", "Sent", ...]
    store.create("alice", "Sent")               # MailboxError if it exists
    store.delete("alice", "Sent")               # MailboxError for INBOX or unknown
    store.rename("alice", "Sent", "Old")        # children move along; INBOX: its messages move
    store.subscriptions("alice"); store.subscribe("alice", "Sent", on=True)
    uid = store.deliver("alice", b"...")        # into INBOX (created on first delivery)
    store.messages("alice", "INBOX")            # -> [Message(uid, size, flags, path), ...]
    box = store.mailbox("alice", "INBOX")       # a Mailbox: messages(), message(uid), read(uid),
                                                #   deliver(), copy_in(), set_flags(), expunge(),
                                                #   remove(uids), uidvalidity, uidnext, recent
    store.users()                               # user names that have a store folder
    store.delete_user("alice")                  # every mailbox of the user
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from msgsrv.errors import OperationFailed
from msgsrv.paths import ServerRoot
from msgsrv.store import maildirname as mn
from msgsrv.store.listing import Gone, Listing, Message
from msgsrv.store.uidlist import KEYWORDS, UIDLIST, Uidlist, read_keywords, write_keywords
from msgsrv.store.users import valid_name

INBOX = "INBOX"
SEP = "."
FLAG_LETTERS = mn.FLAG_LETTERS
SYSTEM_FLAGS = mn.SYSTEM_FLAGS
MAX_NAME = 200  # characters of a mailbox name (a directory name is at most 255 octets)
__all__ = ["INBOX", "SEP", "Mailbox", "MailboxError", "Message", "Store", "canonical", "normalize_crlf"]


class MailboxError(OperationFailed):
    """A store operation was refused (unknown or invalid user or mailbox, INBOX not deletable)."""


def canonical(mbox: str) -> str:
    """RFC 3501 §5.1: INBOX in any case is INBOX (also as the first level); `/` is the delimiter."""
    mbox = mbox.replace("/", SEP)
    head, sep, rest = mbox.partition(SEP)
    return INBOX + sep + rest if head.upper() == INBOX else mbox


def valid_mailbox_name(mbox: str) -> bool:
    """A name the store can hold: non-empty levels, no control characters, not too long."""
    if not mbox or len(mbox) > MAX_NAME or mbox.startswith("~"):
        return False
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in mbox):
        return False
    return all(level and level not in (".", "..") for level in mbox.split(SEP))


def normalize_crlf(data: bytes) -> bytes:
    """Every line end as CRLF (RFC 5322 §2.3), the form IMAP and POP send."""
    if b"\n" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _write_file(path: Path, data: bytes, mtime: float | None = None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)  # RFC 5321 §6.1: once accepted, a message must not be lost
        if mtime is not None:
            os.utime(fd, (mtime, mtime))  # INTERNALDATE is the file's mtime (as in Dovecot)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _mkdir(path: Path) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)


class Mailbox:
    """One maildir. Reading needs no lock; UID allocation, flag changes and expunges take it."""

    def __init__(self, user_dir: Path, path: Path, name: str):
        self.user_dir = user_dir
        self.path = path
        self.name = name
        self._uidlist = Uidlist(path / UIDLIST)
        self._listing = Listing(path)
        self._resets = 0
        self._keywords: list[str] = []
        self._kw_stamp: tuple = ()

    @property
    def cur(self) -> Path:
        return self.path / "cur"

    def exists(self) -> bool:
        return (self.path / "cur").is_dir()

    def ensure(self) -> Mailbox:
        """Create the maildir (idempotent); a new one gets a fresh UIDVALIDITY (RFC 3501 §2.3.1.1)."""
        if self.exists() and (self.path / UIDLIST).exists():
            return self
        self.user_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _mkdir(self.user_dir)
        for d in (self.path, self.path / "tmp", self.path / "new", self.path / "cur"):
            _mkdir(d)
        if self.path != self.user_dir:
            (self.path / "maildirfolder").touch(0o600)
        with self.locked():
            self._uidlist.refresh()
            if not self._uidlist.validity:
                self._uidlist.create(_next_uidvalidity(self.user_dir))
        return self

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the mailbox lock (flock on msgsrv-lock) for the block."""
        with _flock(self.path / "msgsrv-lock"):
            yield

    # -- reading --------------------------------------------------------------------------------
    @property
    def uidvalidity(self) -> int:
        self.messages()
        return self._uidlist.validity

    @property
    def uidnext(self) -> int:
        self.messages()
        return self._uidlist.next_uid

    def keywords(self) -> list[str]:
        """The keywords that messages of this mailbox may carry (index = file-name letter)."""
        path = self.path / KEYWORDS
        try:
            st = path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = ()
        if stamp != self._kw_stamp:
            self._keywords, self._kw_stamp = read_keywords(path), stamp
        return self._keywords

    @property
    def generation(self) -> int:
        """Grows whenever this process sees the mailbox change (messages, flags)."""
        return self._listing.generation

    def cached(self, uid: int) -> Message | None:
        """The Message with UID as of the last look (no new look)."""
        return self._listing.get(uid)

    def changes_since(self, generation: int) -> set[int] | None:
        """UIDs added, removed or re-flagged since GENERATION (None: unknown, compare all)."""
        return self._listing.changes_since(generation)

    def messages(self) -> list[Message]:
        """Messages in UID order (ascending), as they are on disk now; new files get UIDs."""
        listing = self._listing
        try:
            removed, added = listing.scan()
        except Gone:
            raise MailboxError(f"no such mailbox {self.name!r}") from None
        numbered = self._uidlist.refresh()
        kw_before = self._keywords
        keywords = self.keywords()
        records = self._uidlist.records
        listing.apply(removed, added, records, keywords)
        if keywords is not kw_before or self._uidlist.resets != self._resets:
            self._resets = self._uidlist.resets  # a rewritten uidlist or new keyword letters
            listing.rebuild(records, keywords)
        elif numbered and listing.pending:
            listing.resolve(records, keywords)
        if listing.pending or not self._uidlist.validity:
            with self.locked():
                self._uidlist.refresh()
                if not self._uidlist.validity:
                    self._uidlist.create(_next_uidvalidity(self.user_dir))
                unknown = sorted(b for b in listing.pending if b not in self._uidlist.records)
                if unknown:
                    self._uidlist.append(unknown)
            self._resets = self._uidlist.resets
            listing.resolve(self._uidlist.records, keywords)
        return listing.messages()

    def message(self, uid: int) -> Message:
        """The Message with UID, from the last look (looked again when UID is not in it)."""
        msg = self._listing.get(uid)
        if msg is None:
            self.messages()
            msg = self._listing.get(uid)
            if msg is None:
                raise MailboxError(f"no message with UID {uid} in {self.name!r}")
        return msg

    def _refetch(self, uid: int = 0) -> None:
        """Look again: a file was not where the listing said (a flag change elsewhere, expunge)."""
        self._listing.forget()
        self.messages()

    def read(self, uid: int) -> bytes:
        """The message with UID, with CRLF line ends (files written by Dovecot have LF)."""
        for _ in range(3):
            path = self.message(uid).path
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # renamed by a flag change meanwhile, or expunged
                self._refetch(uid)
                continue
            if mn.crlf_stored(mn.split(path.name)[0]) or data.count(b"\n") == data.count(b"\r\n"):
                return data
            return normalize_crlf(data)
        raise MailboxError(f"no message with UID {uid} in {self.name!r}")

    def internaldate(self, uid: int) -> float:
        """RFC 3501 §2.3.3 INTERNALDATE: the file's modification time (APPEND may set it)."""
        for _ in range(3):
            try:
                return self.message(uid).path.stat().st_mtime
            except FileNotFoundError:
                self._refetch(uid)
        raise MailboxError(f"no message with UID {uid} in {self.name!r}")

    # -- \Recent (RFC 3501 §2.3.2) ---------------------------------------------------------------
    def recent_floor(self) -> int:
        """The lowest UID that no session has yet seen as \\Recent."""
        try:
            text = (self.path / "msgsrv-recent").read_text().strip()
            return int(text) if text.isdigit() else 1
        except FileNotFoundError:
            return 1

    def claim_recent(self) -> tuple[int, int]:
        """Take the \\Recent messages for one session: returns (floor, uidnext), the UIDs that are
        recent in that session alone, and moves the floor to uidnext."""
        with self.locked():
            floor = self.recent_floor()
            self._uidlist.refresh()
            top = self._uidlist.next_uid
            if top > floor:
                path = self.path / "msgsrv-recent"
                tmp = path.with_name(f"msgsrv-recent.{os.getpid()}.tmp")
                tmp.write_text(f"{top}\n")
                os.chmod(tmp, 0o600)
                os.replace(tmp, path)
        return floor, max(top, floor)

    # -- writing --------------------------------------------------------------------------------
    def _info(self, flags: frozenset[str]) -> str | None:
        """Info letters for FLAGS, adding new keywords to dovecot-keywords (caller holds the lock)."""
        kws = [f for f in flags if not f.startswith("\\")]
        if kws:
            keywords = list(self.keywords())
            folded = {k.lower(): i for i, k in enumerate(keywords) if k}
            added = False
            for k in kws:
                if k.lower() not in folded and len(keywords) < mn.MAX_KEYWORDS:
                    folded[k.lower()] = len(keywords)
                    keywords.append(k)
                    added = True
            if added:
                write_keywords(self.path / KEYWORDS, keywords)
                self._kw_stamp = ()
            index = {k: folded[k.lower()] for k in kws if k.lower() in folded}
        else:
            index = {}
        return mn.info_of(flags, index) if flags else None

    def deliver(self, data: bytes, flags: frozenset[str] = frozenset(), date: float | None = None) -> int:
        """Store DATA (line ends made CRLF) as a new message; returns its UID."""
        data = normalize_crlf(data)
        self.ensure()
        base = mn.unique_base(len(data))
        tmp = self.path / "tmp" / base
        _write_file(tmp, data, date)
        return self._commit([(tmp, base, frozenset(flags))])[0]

    def copy_in(self, sources: list[tuple[Path, frozenset[str], float | None]]) -> list[int]:
        """Add copies of message files (path, flags, date); hard links where possible. Returns UIDs
        in order. A source that vanished meanwhile gets UID 0."""
        self.ensure()
        staged = []
        for src, flags, date in sources:
            size = mn.size_of(mn.split(src.name)[0])
            try:
                size = src.stat().st_size if size is None else size
                base = mn.unique_base(size)
                tmp = self.path / "tmp" / base
                try:
                    os.link(src, tmp)
                except OSError as e:
                    if isinstance(e, FileNotFoundError):
                        raise
                    _write_file(tmp, src.read_bytes(), date if date is not None else src.stat().st_mtime)
            except FileNotFoundError:
                staged.append(None)
                continue
            staged.append((tmp, base, frozenset(flags)))
        uids = iter(self._commit([s for s in staged if s is not None]))
        return [0 if s is None else next(uids) for s in staged]

    def _commit(self, staged: list[tuple[Path, str, frozenset[str]]]) -> list[int]:
        """Move staged tmp/ files into new/ or cur/ and number them, under the lock."""
        if not staged:
            return []
        try:
            with self.locked():
                self._uidlist.refresh()
                if not self._uidlist.validity:
                    self._uidlist.create(_next_uidvalidity(self.user_dir))
                for tmp, base, flags in staged:
                    info = self._info(flags)
                    sub = "cur" if info is not None else "new"
                    os.rename(tmp, self.path / sub / (base if info is None else mn.cur_name(base, info)))
                return self._uidlist.append([base for _, base, _ in staged])
        except BaseException:
            for tmp, _, _ in staged:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            raise

    def set_flags(self, uid: int, add: frozenset[str] = frozenset(), remove: frozenset[str] = frozenset(),
                  replace: frozenset[str] | None = None) -> frozenset[str]:
        """Change the flags of UID (system flags and keywords); returns the new flags."""
        with self.locked():
            for _ in range(3):
                msg = self.message(uid)
                if replace is not None:
                    new = frozenset(replace)
                else:
                    drop = {f.lower() for f in remove}
                    new = frozenset(f for f in msg.flags | add if f.lower() not in drop)
                if new == msg.flags:
                    return new
                info = self._info(new)
                base = mn.split(msg.path.name)[0]
                target = self.cur / mn.cur_name(base, info or "")
                try:
                    os.rename(msg.path, target)
                except FileNotFoundError:
                    self._refetch(uid)
                    continue
                return self._listing.moved(msg, target, mn.flags_of(info, self.keywords())).flags
        raise MailboxError(f"no message with UID {uid} in {self.name!r}")

    def remove(self, uids: list[int] | set[int]) -> list[int]:
        """Remove the messages with these UIDs now; returns the UIDs actually removed."""
        gone = []
        for uid in sorted(uids):
            for _ in range(3):
                try:
                    msg = self.message(uid)
                    msg.path.unlink()
                except FileNotFoundError:
                    self._refetch(uid)
                    continue
                except MailboxError:
                    break
                self._listing.dropped(msg)
                gone.append(uid)
                break
        if gone:
            self._compact()
        return gone

    def expunge(self) -> list[int]:
        """RFC 3501 §6.4.3: remove every message flagged \\Deleted; returns their UIDs."""
        return self.remove([m.uid for m in self.messages() if m.deleted])

    def _compact(self) -> None:
        """Rewrite dovecot-uidlist without the records of expunged messages once they dominate."""
        live = self.messages()
        stale = len(self._uidlist.records) - len(live)
        if stale < 256 or stale < len(live):
            return
        with self.locked():
            self._listing.forget()
            live = self.messages()
            names = {m.uid for m in live}
            self._uidlist.rewrite({b: u for b, u in self._uidlist.records.items() if u in names})


def _next_uidvalidity(user_dir: Path) -> int:
    """A UIDVALIDITY never handed out before for this user: max(now, last + 1) (RFC 3501 §2.3.1.1)."""
    path = user_dir / "dovecot-uidvalidity"
    with _flock(user_dir / "msgsrv-userlock"):
        try:
            last = int(path.read_text().strip() or "0", 16)
        except (FileNotFoundError, ValueError):
            last = 0
        value = max(int(time.time()), last + 1) & 0xFFFFFFFF or 1
        tmp = path.with_name(f"dovecot-uidvalidity.{os.getpid()}.tmp")
        tmp.write_text(f"{value:08x}")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return value


class Store:
    """The message store of one server root (`root.store_dir`)."""

    CACHED = 64  # Mailbox objects kept per Store: their listings are re-read incrementally

    def __init__(self, root: ServerRoot):
        self.base = root.store_dir
        self._checked: set[str] = set()
        self._boxes: OrderedDict[tuple[str, str], Mailbox] = OrderedDict()

    def _user_dir(self, user: str) -> Path:
        if not valid_name(user):
            raise MailboxError(f"invalid user name {user!r}")
        path = self.base / user
        if user not in self._checked:
            from msgsrv.store.legacy import migrate

            migrate(path, _next_uidvalidity)
            self._checked.add(user)
        return path

    def _path(self, user_dir: Path, name: str) -> Path:
        return user_dir if name == INBOX else user_dir / (SEP + name)

    def mailbox(self, user: str, mbox: str = INBOX) -> Mailbox:
        """The Mailbox object for USER/MBOX (it need not exist yet: see Mailbox.exists)."""
        name = canonical(mbox)
        box = self._boxes.get((user, name))
        if box is not None:
            self._boxes.move_to_end((user, name))
            return box
        if not valid_mailbox_name(name):
            raise MailboxError(f"invalid mailbox name {mbox!r}")
        user_dir = self._user_dir(user)
        box = self._boxes[(user, name)] = Mailbox(user_dir, self._path(user_dir, name), name)
        if len(self._boxes) > self.CACHED:
            self._boxes.popitem(last=False)
        return box

    def users(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.base) if valid_name(n) and (self.base / n).is_dir())
        except FileNotFoundError:
            return []

    def mailboxes(self, user: str) -> list[str]:
        """USER's mailbox names, INBOX first, then sorted."""
        user_dir = self._user_dir(user)
        try:
            entries = os.listdir(user_dir)
        except FileNotFoundError:
            return []
        names = [e[1:] for e in entries if e.startswith(SEP) and valid_mailbox_name(e[1:])
                 and (user_dir / e / "cur").is_dir()]
        if (user_dir / "cur").is_dir():
            names.append(INBOX)
        return sorted(names, key=lambda n: (n != INBOX, n))

    def create(self, user: str, mbox: str) -> Mailbox:
        box = self.mailbox(user, mbox)
        if box.exists():
            raise MailboxError(f"mailbox {box.name!r} of {user!r} already exists")
        return box.ensure()

    def delete(self, user: str, mbox: str) -> None:
        """RFC 3501 §6.3.4: INBOX cannot be deleted; children stay (the name becomes \\Noselect)."""
        box = self.mailbox(user, mbox)
        if box.name == INBOX:
            raise MailboxError("INBOX cannot be deleted")
        if not box.exists():
            raise MailboxError(f"no mailbox {box.name!r} for {user!r}")
        trash = box.user_dir / f"..msgsrv-trash.{uuid.uuid4().hex}"
        os.rename(box.path, trash)  # gone at once for every reader; then removed
        shutil.rmtree(trash, ignore_errors=True)

    def rename(self, user: str, old: str, new: str) -> None:
        """RFC 3501 §6.3.5: OLD and its children become NEW; renaming INBOX moves its messages."""
        src, dst = self.mailbox(user, old), self.mailbox(user, new)
        if dst.name == INBOX or dst.exists() or self.children(user, dst.name):
            raise MailboxError(f"mailbox {dst.name!r} of {user!r} already exists")
        if src.name == INBOX:
            if not src.exists():
                raise MailboxError(f"no mailbox {src.name!r} for {user!r}")
            msgs = src.messages()
            dst.ensure()
            dst.copy_in([(m.path, m.flags, None) for m in msgs])
            src.remove([m.uid for m in msgs])
            return
        kids = self.children(user, src.name)
        if not src.exists() and not kids:
            raise MailboxError(f"no mailbox {src.name!r} for {user!r}")
        if dst.name.startswith(src.name + SEP):
            raise MailboxError(f"cannot move {src.name!r} into itself")
        with _flock(src.user_dir / "msgsrv-userlock"):
            for name in ([src.name] if src.exists() else []) + kids:
                target = dst.name + name[len(src.name):]
                os.rename(self._path(src.user_dir, name), self._path(src.user_dir, target))

    def children(self, user: str, mbox: str) -> list[str]:
        """Existing mailboxes below MBOX in the hierarchy."""
        prefix = canonical(mbox) + SEP
        return [n for n in self.mailboxes(user) if n.startswith(prefix)]

    # -- subscriptions (Maildir++ `subscriptions` file, one name per line) ------------------------
    def subscriptions(self, user: str) -> list[str]:
        try:
            text = (self._user_dir(user) / "subscriptions").read_text("utf-8", "surrogateescape")
        except FileNotFoundError:
            return []
        return [line for line in text.split("\n") if line]

    def subscribe(self, user: str, mbox: str, on: bool = True) -> None:
        name = canonical(mbox)
        if not valid_mailbox_name(name):
            raise MailboxError(f"invalid mailbox name {mbox!r}")
        user_dir = self._user_dir(user)
        user_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _mkdir(user_dir)
        with _flock(user_dir / "msgsrv-userlock"):
            names = [n for n in self.subscriptions(user) if n != name] + ([name] if on else [])
            path = user_dir / "subscriptions"
            tmp = path.with_name(f"subscriptions.{os.getpid()}.tmp")
            tmp.write_text("".join(n + "\n" for n in names), "utf-8", "surrogateescape")
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)

    # -- users -------------------------------------------------------------------------------------
    def delete_user(self, user: str) -> None:
        shutil.rmtree(self._user_dir(user), ignore_errors=True)

    def deliver(self, user: str, data: bytes, mbox: str = INBOX) -> int:
        """Deliver DATA to USER's MBOX (created when missing); returns the new UID."""
        return self.mailbox(user, mbox).deliver(data)

    def messages(self, user: str, mbox: str = INBOX) -> list[Message]:
        return self.mailbox(user, mbox).messages()
