"""A tiny stand-in server for watcher tests run as `local.<c>.command`: greets, answers one line.

argv: PORT [--fork] (with --fork it leaves a grandchild `sleep` in its process group)."""

import os
import signal
import socket
import subprocess
import sys

port = int(sys.argv[1])
if "--fork" in sys.argv:
    subprocess.Popen(["sleep", "1000"])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", port))
s.listen()
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
while True:
    c, _ = s.accept()
    try:
        c.sendall(b"* OK ready\r\n")
        if c.recv(100):
            c.sendall(b"OK status\r\n")
    except OSError:
        pass
    c.close()
