"""Dovecot's maildir bookkeeping files, read and written the way Dovecot does, so that Dovecot
(`mail_location = maildir:...`) keeps the UIDs msgsrv gave out and the other way round.

`dovecot-uidlist` (version 3)::

    3 V<uidvalidity> N<next uid> G<mailbox guid>
    <uid> :<base name>            one record per message, UIDs ascending

New records are appended; the header's N may lag behind the last record (Dovecot, like msgsrv,
takes the larger of N and the last UID + 1). Records of expunged messages stay until the file is
rewritten (`rewrite`, temp file + rename). Readers keep an offset and read only what was appended
since, as long as the file is the same inode.

`dovecot-keywords`: `<index> <keyword>` lines; index i is the file-name letter chr(ord('a') + i).

Writers hold the mailbox lock (msgsrv/store/mailbox.py); reading needs none.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

UIDLIST = "dovecot-uidlist"
KEYWORDS = "dovecot-keywords"


class UidlistError(Exception):
    """The uidlist file is unreadable or broken."""


@dataclass
class Uidlist:
    """The parsed dovecot-uidlist of one maildir (refreshed in place by `refresh`)."""

    path: Path
    validity: int = 0
    next_uid: int = 1
    guid: str = ""
    records: dict[str, int] = field(default_factory=dict)  # base name -> uid, in uid order
    last_uid: int = 0
    resets: int = 0  # grows each time the file is read again from the start (rewritten)
    _ino: int = 0
    _head: bytes = b""
    _offset: int = 0
    damaged: str | None = None  # why the file's header could not be read (its records were not)

    # -- reading ------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Bring the records up to date with the file; True when anything changed."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            changed = bool(self.records) or self._ino != 0
            self._reset()
            return changed
        try:
            st = os.fstat(fd)
            # the header names the file: a mailbox deleted and made again may reuse the inode number
            head = os.pread(fd, 256, 0).partition(b"\n")[0]
            if st.st_ino == self._ino and st.st_size == self._offset and head == self._head:
                return False
            reset = st.st_ino != self._ino or st.st_size < self._offset or head != self._head
            if reset:
                self._reset()
                self._ino, self._head = st.st_ino, head
                self.resets += 1
            os.lseek(fd, self._offset, os.SEEK_SET)
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        end = data.rfind(b"\n") + 1  # a record being appended right now is read next time
        self._parse(data[:end].decode("utf-8", "surrogateescape"))
        self._offset += end
        return reset or end > 0

    def unreadable(self) -> str | None:
        """Why a file with no validity read from it is not a new or lost one (missing, empty)
        but damaged (no whole line, a header without V). Asked under the mailbox lock, when no
        writer of ours is half-way (Dovecot renames a whole file into place)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        return f"{self.path}: no UIDVALIDITY in its {size} bytes" if size else None

    def _reset(self) -> None:
        self.damaged = None
        self.validity, self.next_uid, self.guid = 0, 1, ""
        self.records, self.last_uid, self._ino, self._offset, self._head = {}, 0, 0, 0, b""

    def _parse(self, text: str) -> None:
        lines = text.split("\n")
        if self._offset == 0 and lines and lines[0]:
            try:
                self._header(lines[0])
            except UidlistError as e:
                # not a uidlist any reader here can trust (written over, cut short): its records
                # are not read; the mailbox's next look under the lock writes a new one with a new
                # UIDVALIDITY, as Dovecot does with a broken one, and the clients resynchronise
                self.damaged, self.validity = str(e), 0
                return
            lines = lines[1:]
        for line in lines:
            uid_text, _, rest = line.partition(" ")
            if not uid_text.isdigit():
                continue
            uid = int(uid_text)
            _, colon, base = rest.partition(":")
            if not colon or not base or uid <= self.last_uid:
                continue  # broken or out of order: Dovecot drops such records too
            self.records[base.partition(":")[0]] = uid
            self.last_uid = uid
        self.next_uid = max(self.next_uid, self.last_uid + 1)

    def _header(self, line: str) -> None:
        version, _, rest = line.partition(" ")
        if version == "1":  # Courier / old Dovecot: `1 <validity> <next>`
            parts = rest.split()
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                self.validity, self.next_uid = int(parts[0]), int(parts[1])
            return
        if version != "3":
            raise UidlistError(f"{self.path}: unsupported uidlist version {version[:8]!r}")
        for word in rest.split():
            key, value = word[:1], word[1:]
            if key == "V" and value.isdigit():
                self.validity = int(value)
            elif key == "N" and value.isdigit():
                self.next_uid = int(value)
            elif key == "G":
                self.guid = value

    # -- writing (the caller holds the mailbox lock and has refreshed) -----------------------------
    def create(self, validity: int) -> None:
        """Write a new, empty uidlist with VALIDITY."""
        self.validity, self.next_uid, self.guid = validity, 1, uuid.uuid4().hex
        self.rewrite({})

    def append(self, bases: list[str]) -> list[int]:
        """Give each of BASES the next UID and append their records; returns the UIDs."""
        uids = list(range(self.next_uid, self.next_uid + len(bases)))
        text = "".join(f"{u} :{b}\n" for u, b in zip(uids, bases))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size == 0:  # lost file: start it again with a header
                text = self._header_line() + text
            data = text.encode("utf-8", "surrogateescape")
            os.write(fd, data)
        finally:
            os.close(fd)
        if size and size == self._offset:  # we were up to date: our records are all that is new
            self.records.update(zip(bases, uids))
            self.last_uid = uids[-1] if uids else self.last_uid
            self.next_uid = max(self.next_uid, self.last_uid + 1)
            self._offset += len(data)
        else:
            self.refresh()
        return uids

    def rewrite(self, live: dict[str, int]) -> None:
        """Replace the file with a header and the records in LIVE (base -> uid)."""
        body = "".join(f"{u} :{b}\n" for b, u in sorted(live.items(), key=lambda kv: kv[1]))
        tmp = self.path.with_name(f"{UIDLIST}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (self._header_line() + body).encode("utf-8", "surrogateescape"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._ino = 0  # the next refresh reads the new file from the start
        self.refresh()

    def _header_line(self) -> str:
        guid = f" G{self.guid}" if self.guid else ""
        return f"3 V{self.validity} N{max(self.next_uid, self.last_uid + 1)}{guid}\n"


def read_keywords(path: Path) -> list[str]:
    """The keyword list of a maildir (index = position), from dovecot-keywords."""
    try:
        text = path.read_text("utf-8", "surrogateescape")
    except FileNotFoundError:
        return []
    slots: dict[int, str] = {}
    for line in text.splitlines():
        idx, _, name = line.partition(" ")
        if idx.isdigit() and name and int(idx) < 26:
            slots[int(idx)] = name
    return [slots.get(i, "") for i in range(max(slots, default=-1) + 1)]


def write_keywords(path: Path, keywords: list[str]) -> None:
    text = "".join(f"{i} {k}\n" for i, k in enumerate(keywords) if k)
    tmp = path.with_name(f"{KEYWORDS}.{os.getpid()}.tmp")
    tmp.write_text(text, "utf-8", "surrogateescape")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
