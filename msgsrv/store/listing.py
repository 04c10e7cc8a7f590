"""Listing: what one maildir holds now (its messages, UIDs and flags), kept up to date incrementally.

Each look compares the names in new/ and cur/ with the previous look (set operations, in C), so a
mailbox of thousands of messages costs two directory reads when little changed, not a rebuild. A
directory whose mtime has not moved is not read at all, unless it changed less than FRESH ago: two
renames in one clock tick leave the same mtime, so a recently changed directory is read again.
Changes made through this process's own Mailbox are applied directly (`moved`, `dropped`).
`generation` grows with every change, and `changes_since(generation)` names the UIDs concerned, so
a reader compares only what changed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from msgsrv.store import maildirname as mn

FRESH = 2_000_000_000  # ns
LOG_SIZE = 10_000  # changes remembered for changes_since()
SUBDIRS = ("new", "cur")


@dataclass(frozen=True)
class Message:
    uid: int
    size: int
    flags: frozenset[str]
    path: Path

    @property
    def deleted(self) -> bool:
        return "\\Deleted" in self.flags


class Gone(Exception):
    """The maildir's new/ or cur/ is missing (the mailbox was deleted or renamed)."""


class Listing:
    def __init__(self, path: Path):
        self.path = path
        self.generation = 0
        self._names: dict[str, set[str]] = {sub: set() for sub in SUBDIRS}
        self._stamps: dict[str, tuple | None] = {sub: None for sub in SUBDIRS}
        self._files: dict[str, tuple[str, str]] = {}  # base -> (subdir, file name)
        self._by_uid: dict[int, Message] = {}
        self._base_uid: dict[str, int] = {}
        self.pending: set[str] = set()  # listed files that have no UID yet
        self._sorted: list[Message] | None = None
        self._log: list[int] = []  # UIDs changed, one per generation since _log_start
        self._log_start = 0

    # -- looking ---------------------------------------------------------------------------------
    def scan(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(removed, added) (subdir, name) pairs since the last scan."""
        removed: list[tuple[str, str]] = []
        added: list[tuple[str, str]] = []
        now = time.time_ns()
        for sub in SUBDIRS:
            d = self.path / sub
            try:
                st = os.stat(d)
            except (FileNotFoundError, NotADirectoryError):
                raise Gone() from None
            stamp = (st.st_ino, st.st_mtime_ns)
            if stamp == self._stamps[sub] and now - st.st_mtime_ns >= FRESH:
                continue
            try:
                names = {n for n in os.listdir(d) if n[:1] != "."}
            except (FileNotFoundError, NotADirectoryError):
                raise Gone() from None
            old = self._names[sub]
            if names != old:
                removed += [(sub, n) for n in old - names]
                added += [(sub, n) for n in names - old]
                self._names[sub] = names
            self._stamps[sub] = stamp
        return removed, added

    def apply(self, removed, added, records: dict[str, int], keywords: list[str]) -> None:
        """Take in a scan's differences; files without a record in RECORDS wait in `pending`."""
        for sub, name in removed:
            base = mn.split(name)[0]
            if self._files.get(base) == (sub, name):
                del self._files[base]
                self.pending.discard(base)
                uid = self._base_uid.pop(base, None)
                if uid is not None and self._by_uid.get(uid) is not None:
                    del self._by_uid[uid]
                    self._changed(uid)
        for sub, name in added:
            base = mn.split(name)[0]
            self._files[base] = (sub, name)
            self._take(base, records, keywords)

    def resolve(self, records: dict[str, int], keywords: list[str]) -> None:
        """Number the pending files that RECORDS now knows."""
        for base in [b for b in self.pending if b in records]:
            self._take(base, records, keywords)

    def rebuild(self, records: dict[str, int], keywords: list[str]) -> None:
        """Make every Message again (the keyword letters changed meaning)."""
        self._by_uid.clear()
        self._base_uid.clear()
        for base in list(self._files):
            self._take(base, records, keywords)
        self._changed()

    def _take(self, base: str, records: dict[str, int], keywords: list[str]) -> None:
        uid = records.get(base)
        if uid is None:
            self.pending.add(base)
            return
        self.pending.discard(base)
        sub, name = self._files[base]
        path = self.path / sub / name
        size = mn.size_of(base)
        if size is None:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return
        self._by_uid[uid] = Message(uid, size, mn.flags_of(mn.split(name)[1], keywords), path)
        self._base_uid[base] = uid
        self._changed(uid)

    def _changed(self, uid: int | None = None) -> None:
        self.generation += 1
        self._sorted = None
        if uid is None or len(self._log) >= LOG_SIZE:  # no single UID to name: the log starts again
            self._log, self._log_start = [], self.generation
        else:
            self._log.append(uid)

    def changes_since(self, generation: int) -> set[int] | None:
        """UIDs added, removed or re-flagged after GENERATION; None when that is not known."""
        if generation < self._log_start:
            return None
        return set(self._log[generation - self._log_start:])

    # -- our own changes -------------------------------------------------------------------------
    def moved(self, msg: Message, target: Path, flags: frozenset[str]) -> Message:
        """MSG's file was renamed to TARGET by this process (a flag change)."""
        old_sub, old_name = msg.path.parent.name, msg.path.name
        self._names.get(old_sub, set()).discard(old_name)
        self._names[target.parent.name].add(target.name)
        base = mn.split(target.name)[0]
        self._files[base] = (target.parent.name, target.name)
        new = Message(msg.uid, msg.size, flags, target)
        self._by_uid[msg.uid] = new
        self._base_uid[base] = msg.uid
        self._changed(msg.uid)
        return new

    def dropped(self, msg: Message) -> None:
        """MSG's file was unlinked by this process."""
        self._names.get(msg.path.parent.name, set()).discard(msg.path.name)
        base = mn.split(msg.path.name)[0]
        self._files.pop(base, None)
        self._base_uid.pop(base, None)
        if self._by_uid.pop(msg.uid, None) is not None:
            self._changed(msg.uid)

    def forget(self) -> None:
        """Read both directories at the next look (a file was not where the listing said)."""
        self._stamps = {sub: None for sub in SUBDIRS}

    # -- answers ---------------------------------------------------------------------------------
    def get(self, uid: int) -> Message | None:
        return self._by_uid.get(uid)

    def messages(self) -> list[Message]:
        if self._sorted is None:
            by_uid = self._by_uid
            self._sorted = [by_uid[u] for u in sorted(by_uid)]
        return self._sorted

    @property
    def bases(self) -> set[str]:
        return set(self._files)
