"""How an imapd command ends, besides returning the text of its tagged OK (services/imap.py)."""

from __future__ import annotations


class Refused(Exception):
    """A command failed: `<tag> NO <text>`."""


class Bad(Exception):
    """A command is malformed: `<tag> BAD <text>`."""


ANSWERED = object()  # returned by a command that wrote its own tagged reply (LOGOUT, STARTTLS, ...)
