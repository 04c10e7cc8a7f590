"""Mailbox: one maildir of the store (msgsrv/store/mailbox.py has the layout): reading its messages,
delivering and copying into it, flags, expunge, UIDVALIDITY and \\Recent.

Reading needs no lock (store/listing.py follows the directories, store/uidlist.py the UIDs); UID
allocation, flag changes and expunges hold the mailbox lock, an flock on `msgsrv-lock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from msgsrv.errors import OperationFailed
from msgsrv.store import maildirname as mn
from msgsrv.store.listing import Gone, Listing, Message
from msgsrv.store.uidlist import KEYWORDS, UIDLIST, Uidlist, read_keywords, write_keywords

# where a repair is said: a server sets it to its log (services/base.py), anything else says nothing
on_repair: Callable[[str], None] | None = None


class MailboxError(OperationFailed):
    """A store operation was refused (unknown or invalid user or mailbox, INBOX not deletable)."""


def normalize_crlf(data: bytes) -> bytes:
    """Every line end as CRLF (RFC 5322 §2.3), the form IMAP and POP send."""
    if b"\n" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _write_file(path: Path, data: bytes, mtime: float | None = None) -> None:
    """Write DATA to the new file PATH, synced. A write that fails (a full disk) removes what it had
    written: a part of a message left in tmp/ would keep the disk full for every later one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)  # RFC 5321 §6.1: once accepted, a message must not be lost
        if mtime is not None:
            os.utime(fd, (mtime, mtime))  # INTERNALDATE is the file's mtime (as in Dovecot)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked_file(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def mkdir_private(path: Path) -> None:
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
        mkdir_private(self.user_dir)
        for d in (self.path, self.path / "tmp", self.path / "new", self.path / "cur"):
            mkdir_private(d)
        if self.path != self.user_dir:
            (self.path / "maildirfolder").touch(0o600)
        with self.locked():
            self._uidlist.refresh()
            if not self._uidlist.validity:
                self._uidlist.create(next_uidvalidity(self.user_dir))
        return self

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the mailbox lock (flock on msgsrv-lock) for the block."""
        with locked_file(self.path / "msgsrv-lock"):
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
                    damaged = self._uidlist.damaged or self._uidlist.unreadable()
                    self._uidlist.create(next_uidvalidity(self.user_dir))
                    if damaged and on_repair is not None:
                        on_repair(f"{damaged}; wrote a new one (UIDVALIDITY {self._uidlist.validity}): "
                                  f"the messages of {self.name} get new UIDs")
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
                    self._uidlist.create(next_uidvalidity(self.user_dir))
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


def next_uidvalidity(user_dir: Path) -> int:
    """A UIDVALIDITY never handed out before for this user: max(now, last + 1) (RFC 3501 §2.3.1.1)."""
    path = user_dir / "dovecot-uidvalidity"
    with locked_file(user_dir / "msgsrv-userlock"):
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
