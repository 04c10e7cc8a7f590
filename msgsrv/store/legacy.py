"""One-time conversion of a 0.1.0 store folder into Maildir++ (CHANGELOG 0.2.0).

0.1.0 kept each mailbox in `data/store/<user>/<percent-encoded name>/` with `cur/<uid>,S=<size>:2,<flags>`
files, a `uidvalidity` file and a `uidnext` file. The first time a process of 0.2.0 opens a user,
each such folder becomes a maildir of the new layout with the same UIDVALIDITY, UIDs and flags (so
clients keep their caches), and the old folder is removed. Runs under the user lock; a folder that
cannot be converted (its name is not valid any more) is left where it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from msgsrv.store import maildirname as mn
from msgsrv.store.uidlist import UIDLIST, Uidlist

MAILDIR_DIRS = ("cur", "new", "tmp")


def _legacy_folders(user_dir: Path) -> list[Path]:
    try:
        entries = os.listdir(user_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [user_dir / e for e in entries if not e.startswith(".") and e not in MAILDIR_DIRS
            and (user_dir / e / "uidvalidity").is_file() and (user_dir / e / "cur").is_dir()]


def migrate(user_dir: Path, next_uidvalidity: Callable[[Path], int]) -> None:
    """Convert every 0.1.0 folder under USER_DIR (no-op when there is none)."""
    if not _legacy_folders(user_dir):
        return
    from msgsrv.store.mailbox import INBOX, canonical, valid_mailbox_name

    fd = os.open(user_dir / "msgsrv-userlock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for old in _legacy_folders(user_dir):  # again, under the lock: another process may have done it
            name = canonical(unquote(old.name))
            if not valid_mailbox_name(name):
                continue
            _convert(old, user_dir if name == INBOX else user_dir / ("." + name), user_dir, next_uidvalidity)
    finally:
        os.close(fd)


def _convert(old: Path, new: Path, user_dir: Path, next_uidvalidity: Callable[[Path], int]) -> None:
    for d in (new, *(new / s for s in MAILDIR_DIRS)):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)
    if new != user_dir:
        (new / "maildirfolder").touch(0o600)
    uidlist = Uidlist(new / UIDLIST)
    uidlist.refresh()
    fresh = not uidlist.validity
    records: dict[str, int] = {}
    moved: list[str] = []
    for name in sorted(os.listdir(old / "cur")):
        head, _, letters = name.partition(":2,")
        uid_text, _, size_text = head.partition(",S=")
        if not (uid_text.isdigit() and size_text.isdigit()):
            continue
        base = mn.unique_base(int(size_text))
        info = "".join(sorted(c for c in letters if c in mn.LETTER_FLAGS))
        os.rename(old / "cur" / name, new / "cur" / mn.cur_name(base, info))
        records[base] = int(uid_text)
        moved.append(base)
    if fresh:  # keep UIDVALIDITY and UIDs: clients' caches stay valid
        try:
            uidlist.validity = int((old / "uidvalidity").read_text().strip())
        except ValueError:
            uidlist.validity = next_uidvalidity(user_dir)
        try:
            uidlist.next_uid = max(int((old / "uidnext").read_text().strip() or 1), max(records.values(), default=0) + 1)
        except (FileNotFoundError, ValueError):
            uidlist.next_uid = max(records.values(), default=0) + 1
        uidlist.guid = os.urandom(16).hex()
        uidlist.rewrite(records)
    elif moved:  # the new maildir is already in use: the moved messages get new UIDs
        uidlist.append(moved)
    shutil.rmtree(old, ignore_errors=True)
