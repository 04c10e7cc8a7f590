"""Keeping the watcher's ports out of Linux's ephemeral range (issue 11).

The default control port 49994 (the original's) lies inside net.ipv4.ip_local_port_range
(32768-60999 by default), so an outgoing connection may be given 127.0.0.1:49994 as its local
address and the watcher then cannot listen there. Listing the port in
net.ipv4.ip_local_reserved_ports keeps the kernel from handing it out. Only root may change it:
`watcher reserve-port` adds the configured ports to the list (keeping what is there), and the
systemd unit and the OCF agent run it before the watcher starts.
"""

from __future__ import annotations

from pathlib import Path

RESERVED = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """'1000,2000-2005' -> [(1000, 1000), (2000, 2005)] (the sysctl's own format)."""
    out = []
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        lo, _, hi = item.partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def merged(text: str, ports: list[int]) -> str:
    """TEXT with PORTS added, ranges sorted and joined: the value to write back."""
    ranges = sorted(parse_ranges(text) + [(p, p) for p in ports])
    out: list[list[int]] = []
    for lo, hi in ranges:
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in out)


def reserved(ports: list[int], text: str) -> list[int]:
    spans = parse_ranges(text)
    return [p for p in ports if any(lo <= p <= hi for lo, hi in spans)]


def ephemeral(ports: list[int]) -> list[int]:
    """The PORTS inside the kernel's ephemeral range."""
    try:
        lo, hi = (int(x) for x in RANGE.read_text().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999
    return [p for p in ports if lo <= p <= hi]


def reserve(ports: list[int], dry_run: bool = False) -> tuple[str, str]:
    """Add PORTS to the reserved list. Returns (the value written or to write, what happened)."""
    try:
        current = RESERVED.read_text().strip()
    except OSError as e:
        return "", f"unable to read {RESERVED}: {e.strerror}"
    value = merged(current, ports)
    missing = [p for p in ports if p not in reserved(ports, current)]
    if not missing:
        return value, f"ports {' '.join(map(str, ports))} already reserved"
    if dry_run:
        return value, f"would write {value} to {RESERVED}"
    try:
        RESERVED.write_text(value + "\n")
    except OSError as e:
        return value, f"unable to write {RESERVED}: {(e.strerror or str(e)).lower()} (run as root)"
    return value, f"reserved ports {' '.join(map(str, missing))} ({RESERVED} = {value})"
