"""The message store: mailboxes on disk (mailbox.py) and the users file (users.py).

Shared by the built-in servers (imap, pop, the dispatcher's SMTP/LMTP delivery) and mboxutil.
"""
