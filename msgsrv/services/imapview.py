"""SelectedView: the selected mailbox as one IMAP session sees it (RFC 3501 §2.3.1.2, §5.2, §7.3-7.4).

The view holds the session's message sequence (sequence number = index + 1 -> UID), the flags it
last told the client, and which messages are \\Recent for it. `sync()` compares the view with the
maildir and returns the untagged updates for what other sessions and deliveries changed: EXPUNGE
(high to low, so each number is valid when sent; held back while a FETCH, STORE or SEARCH is
answered, §7.4.1), EXISTS and RECENT for new messages, FETCH FLAGS for flag changes, and FLAGS /
PERMANENTFLAGS when the mailbox got a new keyword.

\\Recent is shared through the mailbox's recent floor (store/mailbox.py): a read-write session
claims the UIDs from the floor to uidnext, so each new message is recent in exactly one session.
"""

from __future__ import annotations

from bisect import bisect_left

from msgsrv.services.imapsyntax import SequenceSet, SyntaxProblem
from msgsrv.store.mailbox import Mailbox, Message

SYSTEM = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def flag_list(flags) -> str:
    system = [f for f in SYSTEM + ("\\Recent",) if f in flags]
    rest = sorted(f for f in flags if f not in system)
    return "(" + " ".join(system + rest) + ")"


class SelectedView:
    def __init__(self, box: Mailbox, readonly: bool):
        self.box = box
        self.readonly = readonly
        self.uids: list[int] = []
        self.flags: dict[int, frozenset[str]] = {}  # as last told to the client (without \Recent)
        self.recent: set[int] = set()
        self.gone: set[int] = set()  # expunged elsewhere, EXPUNGE not sent yet
        self.keywords: list[str] = []
        self._claims: list[tuple[int, int]] = []  # UID ranges this session took as \Recent
        self._claimed_top = 0
        self._floor = 0  # read-only sessions: UIDs from here on are \Recent (nothing is claimed)
        self._generation = -1  # the mailbox's generation at the last sync

    # -- opening and syncing -------------------------------------------------------------------------
    def open(self) -> list[Message]:
        msgs = self.box.messages()
        self._generation = self.box.generation
        if self.readonly:
            self._floor = self.box.recent_floor()
        else:
            self._claim()
        self.uids = [m.uid for m in msgs]
        self.flags = {m.uid: m.flags for m in msgs}
        self.recent = {u for u in self.uids if self._is_recent(u)}
        self.keywords = [k for k in self.box.keywords() if k]
        return msgs

    def _claim(self) -> None:
        lo, hi = self.box.claim_recent()
        self._claims.append((lo, hi))
        self._claimed_top = hi

    def _is_recent(self, uid: int) -> bool:
        if self.readonly:
            return uid >= self._floor
        return any(lo <= uid < hi for lo, hi in self._claims)

    def sync(self, expunge: bool) -> list[str]:
        """Untagged responses for changes since the last sync (EXPUNGE only when EXPUNGE is True).

        Only the UIDs the mailbox reports as changed since the last sync are compared (all of
        them when it cannot say), so a quiet mailbox of any size costs almost nothing."""
        out: list[str] = []
        box = self.box
        msgs = box.messages()
        keywords = [k for k in box.keywords() if k]
        if keywords != self.keywords:
            self.keywords = keywords
            out += self.flag_lines()
        if box.generation == self._generation and not (expunge and self.gone):
            return out
        changed = box.changes_since(self._generation)
        self._generation = box.generation
        top = self.uids[-1] if self.uids else 0
        if changed is None:
            live = {m.uid for m in msgs}
            self.gone = {u for u in self.uids if u not in live}
            new = [m.uid for m in msgs if m.uid > top]
            candidates = self.uids
        else:
            self.gone |= {u for u in changed if u in self.flags and box.cached(u) is None}
            new = sorted(u for u in changed if u > top and box.cached(u) is not None)
            candidates = sorted(u for u in changed if u in self.flags)
        if expunge and self.gone:
            for uid in sorted(self.gone, reverse=True):  # high to low: each number valid when sent
                i = bisect_left(self.uids, uid)
                if i < len(self.uids) and self.uids[i] == uid:
                    del self.uids[i]
                    out.append(f"* {i + 1} EXPUNGE")
                self.flags.pop(uid, None)
                self.recent.discard(uid)
            self.gone = set()
        for uid in candidates:
            msg = box.cached(uid)
            if msg is not None and msg.flags != self.flags.get(uid):
                self.flags[uid] = msg.flags
                out.append(f"* {bisect_left(self.uids, uid) + 1} FETCH (FLAGS {flag_list(self.shown(uid))})")
        if new:
            if not self.readonly and new[-1] >= self._claimed_top:
                self._claim()
            self.uids.extend(new)
            for u in new:
                self.flags[u] = box.cached(u).flags
                if self._is_recent(u):
                    self.recent.add(u)
            out.append(f"* {len(self.uids)} EXISTS")
            out.append(f"* {len(self.recent)} RECENT")
        return out

    def flag_lines(self) -> list[str]:
        flags = "(" + " ".join(list(SYSTEM) + self.keywords) + ")"
        perm = "()" if self.readonly else "(" + " ".join(list(SYSTEM) + self.keywords + (
            ["\\*"] if len(self.keywords) < 26 else [])) + ")"
        return [f"* FLAGS {flags}", f"* OK [PERMANENTFLAGS {perm}] Flags permitted."]

    def announce(self, flags) -> list[str]:
        """FLAGS / PERMANENTFLAGS lines to send before a FETCH that shows a keyword the client has
        not been told about yet (RFC 3501 §7.2.6); empty when there is none."""
        if all(f.startswith("\\") or f in self.keywords for f in flags):
            return []
        self.keywords = [k for k in self.box.keywords() if k]
        return self.flag_lines()

    def shown(self, uid: int) -> frozenset[str]:
        """The flags of UID as the client sees them, \\Recent included."""
        flags = self.flags.get(uid, frozenset())
        return flags | {"\\Recent"} if uid in self.recent else flags

    # -- addressing ----------------------------------------------------------------------------------
    def pairs(self, text: str, uid: bool) -> list[tuple[int, int]]:
        """(sequence number, UID) pairs a sequence set names (UIDs for UID commands), ascending.

        A sequence number beyond the mailbox is an error (RFC 3501 §9 seq-number); UIDs that are
        not there are simply not named (§6.4.8)."""
        seqset = SequenceSet(text)
        if uid:
            largest = self.uids[-1] if self.uids else 0
            return [(i + 1, self.uids[i]) for i in seqset.select(self.uids, largest)]
        n = len(self.uids)
        if not n:
            if seqset.has_star:
                return []
            raise SyntaxProblem("invalid message sequence number (mailbox is empty)")
        ranges = seqset.ranges(n)
        if ranges[-1][1] > n:
            raise SyntaxProblem("invalid message sequence number")
        return [(s, self.uids[s - 1]) for lo, hi in ranges for s in range(lo, hi + 1)]

    def seq_of(self, uid: int) -> int | None:
        i = bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None
