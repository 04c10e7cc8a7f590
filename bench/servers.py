"""Benchmark of the built-in servers: spawn -> accepting, spawn -> first answer and RSS per server,
then end-to-end SMTP -> store -> IMAP FETCH with one client, then the IMAP bulk fetch rates of one
command over the whole mailbox (`UID FETCH 1:* BODY.PEEK[]`, and the header fetch mail clients start with).

    python bench/servers.py [--messages 1000] [--size 10240] [--runs 3]

Goals (issue 4): each server accepting within 250 ms of spawn, RSS <= 30 MB each. "accepting" is
the first successful connect (the port is bound); "answers" is the first protocol reply (a
greeting, or for http the status line of GET /health), which for mshttpd comes after aiohttp is
imported. Throughput with 1 and 8 SMTP clients and TLS handshake cost: bench/mail_bench.py. Runs in a
temporary server root on free loopback ports.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPONENTS = {  # component -> port parameters
    "store": ("local.store.port",),
    "ens": ("local.ens.port",),
    "imap": ("service.imap.port",),
    "pop": ("service.pop.port", "service.pop.sslport"),
    "cert": ("local.cert.port",),
    "http": ("service.http.port", "service.http.sslport"),
    "sched": ("local.sched.port",),
    "dispatcher": ("service.smtp.port", "service.lmtp.port", "service.smtp.sslport"),
    "job_controller": ("local.job_controller.port",),
    "mmp": ("local.mmp.imapport", "local.mmp.popport"),
}
USER, PASSWORD = "bench", "bench password"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def setup(base: Path) -> dict[str, int]:
    from msgsrv.config.store import ConfigStore
    from msgsrv.paths import ServerRoot
    from msgsrv.store.users import Users

    root = ServerRoot(base).ensure()
    params = [p for ps in COMPONENTS.values() for p in ps] + ["local.watcher.port", "service.imap.sslport"]
    ports = dict(zip(params, free_ports(len(params))))
    ConfigStore(root.config_file).update({k: str(v) for k, v in ports.items()})
    Users(root).add(USER, PASSWORD)
    return ports


def env(base: Path) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MSGSRV_")}
    e["MSGSRV_BASE"] = str(base)
    return e


def spawn(base: Path, component: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "msgsrv.services", component], env=env(base),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait_accepting(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server on port {port} did not start") from None
            time.sleep(0.001)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def first_answer(component: str, port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait until the server on PORT sends its first protocol answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                if component == "http":
                    s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                if s.recv(512):
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server on port {port} did not answer")
        time.sleep(0.001)


def startup(base: Path, ports: dict[str, int], runs: int) -> list[tuple[str, float, float, float]]:
    rows = []
    for component, params in COMPONENTS.items():
        accepting, answering, rss = [], [], []
        for _ in range(runs):
            t0 = time.monotonic()
            proc = spawn(base, component)
            for p in params:
                wait_accepting(ports[p], proc)
            accepting.append(time.monotonic() - t0)
            first_answer(component, ports[params[0]], proc)  # one served connection: RSS includes a session
            answering.append(time.monotonic() - t0)
            rss.append(rss_mb(proc.pid))
            stop(proc)
        rows.append((component, statistics.median(accepting) * 1000, statistics.median(answering) * 1000, max(rss)))
    return rows


def throughput(base: Path, ports: dict[str, int], n: int, size: int) -> tuple[float, float, float, float, float]:
    procs = [spawn(base, "dispatcher"), spawn(base, "imap")]
    try:
        wait_accepting(ports["service.smtp.port"], procs[0])
        wait_accepting(ports["service.imap.port"], procs[1])
        line = b"x" * 76 + b"\r\n"
        body = line * (size // len(line))
        start = time.monotonic()
        with smtplib.SMTP("127.0.0.1", ports["service.smtp.port"]) as s:
            for i in range(n):
                s.sendmail("load@example.org", [USER], b"Subject: bench %d\r\n\r\n" % i + body)
        sent = time.monotonic()
        im = imaplib.IMAP4("127.0.0.1", ports["service.imap.port"])
        im.login(USER, PASSWORD)
        typ, data = im.select("INBOX")
        assert int(data[0]) == n, data
        for i in range(1, n + 1):
            typ, msg = im.fetch(str(i), "(RFC822)")
            assert typ == "OK" and msg[0][1].endswith(body), i
        im.logout()
        done = time.monotonic()
        rss = max(rss_mb(p.pid) for p in procs)
    finally:
        for p in procs:
            stop(p)
    total = done - start
    return n / total, n / (sent - start), n / (done - sent), total, rss


IMAP_BULK = {  # label -> UID FETCH items over 1:*
    "UID FETCH 1:* BODY.PEEK[]": "BODY.PEEK[]",
    "UID FETCH 1:* headers (mutt)": "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SUBJECT TO CC "
                                    "MESSAGE-ID REFERENCES CONTENT-TYPE IN-REPLY-TO)])",
}


def imap_bulk(base: Path, ports: dict[str, int], n: int, runs: int) -> list[tuple[str, float, float]]:
    """(label, messages/s, MB/s) of one UID FETCH over the N messages already in INBOX (median of RUNS)."""
    proc = spawn(base, "imap")
    rows = []
    try:
        wait_accepting(ports["service.imap.port"], proc)
        im = imaplib.IMAP4("127.0.0.1", ports["service.imap.port"])
        im.login(USER, PASSWORD)
        im.select("INBOX", readonly=True)
        for label, items in IMAP_BULK.items():
            times, octets = [], 0
            for _ in range(runs):
                start = time.monotonic()
                try:
                    typ, data = im.uid("FETCH", "1:*", items)
                except imaplib.IMAP4.error:
                    break  # refused (an older server): no figure
                times.append(time.monotonic() - start)
                parts = [d for d in data if isinstance(d, tuple)]
                assert typ == "OK" and len(parts) == n, (typ, len(parts))
                octets = sum(len(d[1]) for d in parts)
            if times:
                t = statistics.median(times)
                rows.append((label, n / t, octets / t / 1e6))
            else:
                rows.append((label, 0.0, 0.0))
        im.logout()
    finally:
        stop(proc)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "root"
        ports = setup(base)
        print(f"{'server':<16}{'accepting (ms)':>16}{'answers (ms)':>14}{'RSS (MB)':>10}")
        for component, ms, answer_ms, rss in startup(base, ports, args.runs):
            flag = "" if ms <= 250 and rss <= 30 else "  (over goal)"
            print(f"{component:<16}{ms:>16.0f}{answer_ms:>14.0f}{rss:>10.1f}{flag}")
        rate, smtp_rate, imap_rate, total, rss = throughput(base, ports, args.messages, args.size)
        print()
        print(f"end to end, {args.messages} messages of {args.size} bytes: {rate:.0f} messages/s "
              f"({total:.2f} s; SMTP in {smtp_rate:.0f}/s, IMAP FETCH out {imap_rate:.0f}/s; max RSS {rss:.1f} MB)")
        print()
        print(f"{'IMAP bulk fetch, ' + str(args.messages) + ' messages':<40}{'messages/s':>12}{'MB/s':>8}")
        for label, per_s, mb_s in imap_bulk(base, ports, args.messages, args.runs):
            print(f"{label:<40}{per_s:>12.0f}{mb_s:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
