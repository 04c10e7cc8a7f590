"""msgsrv: watcher/msprobe supervision of a family of mail services."""

__version__ = "0.2.0"
