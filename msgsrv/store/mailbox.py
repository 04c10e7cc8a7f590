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

API (used by imapd, popd, the dispatcher and mboxutil; Mailbox lives in store/maildir.py)::

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

import os
import shutil
import uuid
from collections import OrderedDict
from pathlib import Path

from msgsrv.paths import ServerRoot
from msgsrv.store import maildirname as mn
from msgsrv.store.listing import Message
from msgsrv.store.maildir import Mailbox, MailboxError, locked_file, mkdir_private, next_uidvalidity, normalize_crlf
from msgsrv.store.users import valid_name

INBOX = "INBOX"
SEP = "."
FLAG_LETTERS = mn.FLAG_LETTERS
SYSTEM_FLAGS = mn.SYSTEM_FLAGS
MAX_NAME = 200  # characters of a mailbox name (a directory name is at most 255 octets)
__all__ = ["INBOX", "SEP", "Mailbox", "MailboxError", "Message", "Store", "canonical", "normalize_crlf"]


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

            migrate(path, next_uidvalidity)
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
        with locked_file(src.user_dir / "msgsrv-userlock"):
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
        mkdir_private(user_dir)
        with locked_file(user_dir / "msgsrv-userlock"):
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
