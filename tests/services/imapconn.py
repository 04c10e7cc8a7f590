"""A raw IMAP client for the imapd tests: send a tagged command, get its untagged lines (literals
inlined) and the tagged completion, with a deadline on every read."""

from __future__ import annotations

import re
import socket
import ssl

LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


class ImapConn:
    def __init__(self, port: int, timeout: float = 10.0, context: ssl.SSLContext | None = None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(sock) if context is not None else sock
        self.file = self.sock.makefile("rb")
        self.n = 0
        self.greeting = self.line()

    def line(self) -> bytes:
        """One response line; a line that ends in a literal gets the literal and the rest appended."""
        out = self.file.readline(1 << 20)
        while True:
            m = LITERAL.search(out)
            if m is None:
                return out.rstrip(b"\r\n")
            out += self.file.read(int(m.group(1)))
            out += self.file.readline(1 << 20)

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def cmd(self, text: str | bytes, tag: str | None = None) -> tuple[list[bytes], bytes]:
        """Send TAG TEXT; return (untagged and continuation lines, the tagged line)."""
        self.n += 1
        tag = tag or f"t{self.n}"
        raw = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + raw + b"\r\n")
        return self.until(tag)

    def until(self, tag: str) -> tuple[list[bytes], bytes]:
        lines = []
        while True:
            line = self.line()
            if not line:
                raise ConnectionError(f"closed before the reply to {tag}; got {lines}")
            if line.startswith(tag.encode() + b" "):
                return lines, line
            lines.append(line)

    def ok(self, text: str | bytes) -> list[bytes]:
        lines, done = self.cmd(text)
        assert done.split(b" ")[1] == b"OK", (text, lines, done)
        return lines

    def login(self, user: str, password: str) -> None:
        self.ok(f'LOGIN {user} "{password}"')

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> ImapConn:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
