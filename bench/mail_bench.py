"""Benchmark of the mail path and of TLS (issue 13 "Tests and numbers"):

1. SMTP -> store -> IMAP: MESSAGES messages of SIZE bytes sent by 1 and by 8 concurrent SMTP
   clients (each on its own connection), then every one fetched with IMAP FETCH; end-to-end
   messages/s, the SMTP and the IMAP halves.
2. TLS handshake cost: connect -> first protocol answer, plain port vs implicit-TLS port of the
   same server (POP, SMTP, HTTP), median of ROUNDS sequential connections; the difference is what
   the TCP + TLS handshake adds (a full handshake each time, as msprobe does).

    python bench/mail_bench.py [--messages 1000] [--size 10240] [--clients 1 8] [--rounds 50]

Goals: >= 500 messages/s delivered with 8 clients on the 2-core machine, and nothing worse than
0.1.0's ~400 messages/s with one. Runs in a temporary server root on free loopback ports.
"""

from __future__ import annotations

import argparse
import http.client
import imaplib
import os
import poplib
import smtplib
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import PASSWORD, USER, setup, spawn, stop, wait_accepting  # noqa: E402


def send(port: int, start: int, count: int, body: bytes, errors: list) -> None:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            for i in range(start, start + count):
                s.sendmail("load@example.org", [USER], b"Subject: bench %d\r\n\r\n" % i + body)
    except Exception as e:  # reported in the table, never a traceback mid-run
        errors.append(f"{type(e).__name__}: {e}")


def throughput(base: Path, ports: dict[str, int], n: int, size: int, clients: int) -> dict:
    """SMTP in with CLIENTS connections, then IMAP FETCH of every message; rates and times."""
    from msgsrv.paths import ServerRoot
    from msgsrv.store.mailbox import Store

    Store(ServerRoot(base)).delete_user(USER)  # each run starts from an empty INBOX
    procs = [spawn(base, "dispatcher"), spawn(base, "imap")]
    try:
        wait_accepting(ports["service.smtp.port"], procs[0])
        wait_accepting(ports["service.imap.port"], procs[1])
        with smtplib.SMTP("127.0.0.1", ports["service.smtp.port"], timeout=30) as s:
            s.noop()  # the dispatcher answers: its start-up is not part of the figure
        line = b"x" * 76 + b"\r\n"
        body = line * (size // len(line))
        share = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
        starts = [sum(share[:i]) for i in range(clients)]
        errors: list[str] = []
        threads = [threading.Thread(target=send, args=(ports["service.smtp.port"], starts[i], share[i], body, errors))
                   for i in range(clients)]
        cpu0 = cpu_seconds(procs[0].pid)
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent = time.monotonic()
        cpu = cpu_seconds(procs[0].pid) - cpu0
        im = imaplib.IMAP4("127.0.0.1", ports["service.imap.port"])
        im.login(USER, PASSWORD)
        typ, data = im.select("INBOX")
        stored = int(data[0])
        for i in range(1, stored + 1):
            typ, msg = im.fetch(str(i), "(RFC822)")
            if typ != "OK" or not msg[0][1].endswith(body):
                errors.append(f"message {i} fetched wrong")
                break
        im.logout()
        done = time.monotonic()
    finally:
        for p in procs:
            stop(p)
    if stored != n:
        errors.append(f"{stored} of {n} messages stored")
    return {"clients": clients, "total": n / (done - t0), "smtp": n / (sent - t0), "imap": n / (done - sent),
            "seconds": done - t0, "cpu_ms": cpu * 1000 / n, "errors": errors}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of PID and its threads (the delivery threads too)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- TLS handshake cost ------------------------------------------------------------------------------
def first_answer(kind: str, port: int, context: ssl.SSLContext | None) -> float:
    """Seconds from connect to the first protocol answer (including the TLS handshake)."""
    t0 = time.perf_counter()
    if kind == "pop":
        c = poplib.POP3_SSL("127.0.0.1", port, timeout=10, context=context) if context else \
            poplib.POP3("127.0.0.1", port, timeout=10)
        took = time.perf_counter() - t0  # the greeting has been read
        c.quit()
    elif kind == "smtp":
        c = smtplib.SMTP_SSL("127.0.0.1", port, timeout=10, context=context) if context else \
            smtplib.SMTP("127.0.0.1", port, timeout=10)
        took = time.perf_counter() - t0  # the banner has been read
        c.quit()
    else:
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context) if context else \
            http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/health")
        c.getresponse().read()
        took = time.perf_counter() - t0
        c.close()
    return took


def handshake_cost(base: Path, ports: dict[str, int], rounds: int) -> list[tuple[str, float, float]]:
    from msgsrv import tls
    from msgsrv.paths import ServerRoot

    pairs = (("pop", "pop", "service.pop.port", "service.pop.sslport"),
             ("smtp", "dispatcher", "service.smtp.port", "service.smtp.sslport"),
             ("http", "http", "service.http.port", "service.http.sslport"))
    context = tls.client_context(ServerRoot(base))
    rows = []
    for kind, component, plain, secure in pairs:
        proc = spawn(base, component)
        try:
            wait_accepting(ports[plain], proc)
            wait_accepting(ports[secure], proc)
            first_answer(kind, ports[plain], None)  # warm: imports done, caches filled
            first_answer(kind, ports[secure], context)
            a = [first_answer(kind, ports[plain], None) for _ in range(rounds)]
            b = [first_answer(kind, ports[secure], context) for _ in range(rounds)]
        finally:
            stop(proc)
        rows.append((kind, statistics.median(a) * 1000, statistics.median(b) * 1000))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3, help="runs per client count; the median run is shown")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "root"
        ports = setup(base)
        print(f"SMTP -> store -> IMAP FETCH, {args.messages} messages of {args.size} bytes, "
              f"median of {args.repeat} runs (best end to end in brackets)")
        print(f"{'SMTP clients':<14}{'end to end':>18}{'SMTP in':>10}{'IMAP out':>10}{'dispatcher CPU':>16}")
        failed = False
        runs = {c: [] for c in args.clients}
        for _ in range(args.repeat):  # interleaved, so a burst of load elsewhere hits every count alike
            for clients in args.clients:
                runs[clients].append(throughput(base, ports, args.messages, args.size, clients))
        for clients, rs in runs.items():
            rs.sort(key=lambda r: r["total"])
            r = rs[len(rs) // 2]
            errors = [e for x in rs for e in x["errors"]]
            note = "  " + "; ".join(errors[:2]) if errors else ""
            failed |= bool(errors)
            print(f"{clients:<14}{r['total']:>8.0f} m/s ({rs[-1]['total']:>4.0f}){r['smtp']:>6.0f} m/s"
                  f"{r['imap']:>6.0f} m/s{r['cpu_ms']:>9.2f} ms/msg{note}")
        print()
        print(f"TLS handshake cost: connect -> first answer, median of {args.rounds}")
        print(f"{'protocol':<10}{'plain (ms)':>12}{'TLS (ms)':>10}{'handshake (ms)':>16}")
        for kind, plain, secure in handshake_cost(base, ports, args.rounds):
            print(f"{kind:<10}{plain:>12.2f}{secure:>10.2f}{secure - plain:>16.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
