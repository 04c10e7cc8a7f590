"""The console's address with its token, as start-msg prints it: `Console: http://127.0.0.1:49995/?token=…`.

The console writes data/run/console.url (0600: it holds the control token) once it listens, and
removes it when it stops; start-msg only reads it. Imports nothing heavy (start-msg uses it).
"""

from __future__ import annotations

import contextlib
import time
from urllib.parse import quote

from msgsrv.atomicfile import write_atomic
from msgsrv.paths import ServerRoot

WILDCARDS = ("", "0.0.0.0", "::", "*")
LINE = "Console: {url}"
PUBLISH_WAIT = 1.0  # seconds start-msg waits for a watcher it just launched to publish the link


def url_file(root: ServerRoot):
    return root.run_dir / "console.url"


def base_url(host: str, port: int) -> str:
    """The address a browser on this machine uses (a wildcard bind is reached through loopback)."""
    h = "127.0.0.1" if host in WILDCARDS else host
    return f"http://[{h}]:{port}/" if ":" in h else f"http://{h}:{port}/"


def token_url(host: str, port: int, token: str) -> str:
    return f"{base_url(host, port)}?token={quote(token, safe='')}"


def publish(root: ServerRoot, url: str) -> None:
    write_atomic(url_file(root), url + "\n")


def withdraw(root: ServerRoot) -> None:
    with contextlib.suppress(FileNotFoundError):
        url_file(root).unlink()


def read(root: ServerRoot) -> str | None:
    """The published console link, or None when no console is listening."""
    try:
        return url_file(root).read_text().strip() or None
    except OSError:
        return None


def awaited(root: ServerRoot, expected: bool, timeout: float = PUBLISH_WAIT) -> str | None:
    """The link; when a console is EXPECTED (httpport is not 0) but not published yet (a watcher that
    just started lists its console a moment after its control port), wait up to TIMEOUT for it."""
    deadline = time.monotonic() + (timeout if expected else 0.0)
    while True:
        url = read(root)
        if url or time.monotonic() >= deadline:
            return url
        time.sleep(0.02)
