"""A tiny stand-in server for watcher tests run as `local.<c>.command`: greets, answers one line.

argv: PORT [options]
    --fork              leave a grandchild `sleep` in its process group
    --stubborn-child    fork a child that ignores SIGTERM and keeps the listening socket (an orphan
                        that would swallow clients if it survived its leader)
    --escape            the stubborn child also calls setsid() (only a cgroup catches it)
    --delay S           wait S seconds before listening (a slow start)
    --ignore-term       ignore SIGTERM (only SIGKILL stops it)
    --slow-term S       on SIGTERM, exit 0 only after S seconds (a slow, orderly shutdown)
    --exit-after-first  exit with status 1 right after its first connection (readiness check passed)
    --hang              accept connections but never answer them (a hung server)
    --drop-registration S   register with the watcher like a built-in server, then close the
                        registration without BYE after S seconds and stay alive

It runs as `python -S` (no site-packages): a stand-in's start costs no coverage start-up, and it
imports only the standard library and, for --drop-registration, msgsrv's control client.

It binds with SO_REUSEPORT so that several copies (numprocesses > 1) can share a port, as an
external program managing its own sockets might.
"""

import os
import signal
import socket
import subprocess
import sys
import time

port = int(sys.argv[1])
args = sys.argv[2:]


def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default


if "--delay" in args:
    time.sleep(float(opt("--delay")))
if "--fork" in args:
    subprocess.Popen(["sleep", "1000"])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", port))
s.listen()
if "--stubborn-child" in args and os.fork() == 0:
    if "--escape" in args:
        os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:  # holds the listening socket, never accepts
        time.sleep(1)
if "--ignore-term" in args:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif "--slow-term" in args:
    signal.signal(signal.SIGTERM, lambda *a: (time.sleep(float(opt("--slow-term"))), os._exit(0)))
else:
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
if "--drop-registration" in args:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    from msgsrv.control.client import WatcherClient
    from msgsrv.paths import ServerRoot

    reg = [WatcherClient.connect(ServerRoot.from_env(), int(os.environ["MSGSRV_WATCHER_PORT"]))]
    reg[0].request("REGISTER", os.environ["MSGSRV_COMPONENT"], str(os.getpid()))

    def drop(*_):
        if reg:
            reg.pop().close()  # no BYE: the watcher must treat this as a failure

    signal.signal(signal.SIGALRM, drop)
    signal.setitimer(signal.ITIMER_REAL, float(opt("--drop-registration")))
held = []
while True:
    try:
        c, _ = s.accept()
    except InterruptedError:
        continue
    if "--hang" in args:
        held.append(c)
        continue
    try:
        c.sendall(b"* OK ready\r\n")
        if c.recv(100):
            c.sendall(b"OK status\r\n")
    except OSError:
        pass
    c.close()
    if "--exit-after-first" in args:
        os._exit(1)
