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

    # -- opening and syncing -------------------------------------------------------------------------
    def open(self) -> list[Message]:
        msgs = self.box.messages()
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
        """Untagged responses for changes since the last sync (EXPUNGE only when EXPUNGE is True)."""
        out: list[str] = []
        live = {m.uid: m.flags for m in self.box.messages()}
        keywords = [k for k in self.box.keywords() if k]
        if keywords != self.keywords:
            self.keywords = keywords
            out += self.flag_lines()
        self.gone = {u for u in self.uids if u not in live}
        if expunge and self.gone:
            for seq in range(len(self.uids), 0, -1):
                uid = self.uids[seq - 1]
                if uid in self.gone:
                    del self.uids[seq - 1]
                    self.flags.pop(uid, None)
                    self.recent.discard(uid)
                    out.append(f"* {seq} EXPUNGE")
            self.gone = set()
        top = self.uids[-1] if self.uids else 0
        new = sorted(u for u in live if u > top)
        if new:
            if not self.readonly and new[-1] >= self._claimed_top:
                self._claim()
            self.uids.extend(new)
            for u in new:
                self.flags[u] = live[u]
                if self._is_recent(u):
                    self.recent.add(u)
            out.append(f"* {len(self.uids)} EXISTS")
            out.append(f"* {len(self.recent)} RECENT")
        for seq, uid in enumerate(self.uids, 1):
            now = live.get(uid)
            if now is not None and now != self.flags.get(uid):
                self.flags[uid] = now
                out.append(f"* {seq} FETCH (FLAGS {flag_list(self.shown(uid))})")
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
        from bisect import bisect_left

        i = bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None
