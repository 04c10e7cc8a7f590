"""Response-time plots as SVG, drawn on the server: no chart library, no CDN, nothing fetched.

Pure: points and thresholds in, SVG text out. The y axis is logarithmic, so a healthy 3 ms answer,
the 5 s warning threshold and the 10 s timeout are all readable on one plot. A failed probe
(history `ok = 0`) is marked across the whole height: HUNG when it took the timeout (msprobe gave
up waiting), DOWN when it failed sooner (refused, closed, wrong answer). Styling is by class names
that console.css colours; the SVG carries no style attribute or element (the page's CSP allows
no inline style).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from html import escape

RANGES: dict[str, float] = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0}
HUNG_FRACTION = 0.95  # a failure that took at least 95 % of the timeout was a timeout

W, H = 600, 220
LEFT, RIGHT, TOP, BOTTOM = 54, 14, 12, 26
PAD = 8  # pixels between the newest possible point and the frame's right edge

# time-axis tick spacing per range: (step seconds, strftime format)
TICKS = {"hour": (600, "%H:%M"), "day": (3 * 3600, "%H:%M"), "week": (86400, "%a %d")}


@dataclass(frozen=True)
class Point:
    ts: float
    value: float  # seconds
    ok: bool


def status(p: Point, warn: float, timeout: float) -> str:
    """ok | warn | hung | down: the class of one point (verdict.classify's words, from history)."""
    if not p.ok:
        return "hung" if p.value >= timeout * HUNG_FRACTION else "down"
    return "warn" if p.value > warn else "ok"


def human_seconds(v: float) -> str:
    """0.0042 -> '4.2 ms', 12 -> '12 s'."""
    if v < 1:
        ms = v * 1000
        return f"{ms:.3g} ms" if ms >= 0.01 else "0 ms"
    return f"{v:.3g} s"


class _LogScale:
    """Seconds -> y pixel on a decade scale that holds every value and both thresholds."""

    FLOOR = 1e-4  # 0.1 ms: anything faster is drawn on the floor

    def __init__(self, values: list[float], top: float, bottom: float):
        vals = [max(v, self.FLOOR) for v in values]
        self.lo = 10 ** math.floor(math.log10(min(vals)))
        self.hi = max(max(vals) * 1.8, self.lo * 10)  # head room above the timeout line for its label
        self.top, self.bottom = top, bottom

    def y(self, v: float) -> float:
        v = min(max(v, self.lo), self.hi)
        f = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return self.bottom - f * (self.bottom - self.top)

    def decades(self) -> list[float]:
        out, v = [], self.lo
        while v <= self.hi:
            out.append(v)
            v *= 10
        return out


def _time_ticks(start: float, end: float, rng: str) -> list[tuple[float, str]]:
    step, fmt = TICKS.get(rng, TICKS["hour"])
    # align to the local clock: ticks at whole steps of local time
    offset = time.localtime(start).tm_gmtoff
    first = math.ceil((start + offset) / step) * step - offset
    out = []
    t = first
    while t <= end:
        out.append((t, time.strftime(fmt, time.localtime(t))))
        t += step
    return out


def render(series: str, points: list[Point], start: float, end: float, warn: float, timeout: float,
           rng: str = "hour") -> str:
    """The SVG plot of SERIES between START and END (Unix times)."""
    x0, x1, y0, y1 = LEFT, W - RIGHT, TOP, H - BOTTOM
    span = max(end - start, 1e-9)

    def x(t: float) -> float:
        return x0 + (min(max(t, start), end) - start) / span * (x1 - PAD - x0)

    scale = _LogScale([p.value for p in points] + [warn, timeout], y0, y1)
    title = f"{series} response time"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {W} {H}" '
           f'role="img" aria-label="{escape(title)}" data-series="{escape(series)}" '
           f'data-points="{len(points)}">',
           f"<title>{escape(title)}</title>",
           f'<rect class="frame" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}"/>']
    # grid and axes
    for v in scale.decades():
        yy = scale.y(v)
        out.append(f'<line class="grid" x1="{x0}" y1="{yy:.1f}" x2="{x1}" y2="{yy:.1f}"/>')
        out.append(f'<text class="tick y" x="{x0 - 6}" y="{yy + 4:.1f}">{escape(human_seconds(v))}</text>')
    for t, label in _time_ticks(start, end, rng):
        xx = x(t)
        out.append(f'<line class="grid" x1="{xx:.1f}" y1="{y0}" x2="{xx:.1f}" y2="{y1}"/>')
        out.append(f'<text class="tick x" x="{xx:.1f}" y="{y1 + 18}">{escape(label)}</text>')
    # failures: a band across the whole height, so a hang is seen at a glance
    for p in points:
        st = status(p, warn, timeout)
        if st in ("hung", "down"):
            xx = x(p.ts)
            out.append(f'<line class="fail {st}" x1="{xx:.1f}" y1="{y0}" x2="{xx:.1f}" y2="{y1}"/>')
    # thresholds
    # the timeout's label above its line, the warning's below its own: they never overlap
    for cls, v, label, dy in (("warn-line", warn, "warning", 12), ("timeout-line", timeout, "timeout", -4)):
        yy = scale.y(v)
        out.append(f'<line class="{cls}" x1="{x0}" y1="{yy:.1f}" x2="{x1}" y2="{yy:.1f}"/>')
        out.append(f'<text class="line-label {cls}" x="{x1 - 4}" y="{yy + dy:.1f}">'
                   f"{label} {escape(human_seconds(v))}</text>")
    # the answered probes as a line, then every probe as a mark with a tooltip
    answered = [p for p in points if p.ok]
    if len(answered) > 1:
        coords = " ".join(f"{x(p.ts):.1f},{scale.y(p.value):.1f}" for p in answered)
        out.append(f'<polyline class="trace" points="{coords}"/>')
    for p in points:
        st = status(p, warn, timeout)
        xx, yy = x(p.ts), scale.y(p.value)
        tip = escape(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(p.ts))}  "
                     f"{human_seconds(p.value)}  {st.upper()}")
        if st in ("ok", "warn"):
            out.append(f'<circle class="pt {st}" cx="{xx:.1f}" cy="{yy:.1f}" r="3.5"><title>{tip}</title></circle>')
        else:
            d = 5
            out.append(f'<path class="pt {st}" d="M{xx - d:.1f},{yy - d:.1f}L{xx + d:.1f},{yy + d:.1f}'
                       f'M{xx - d:.1f},{yy + d:.1f}L{xx + d:.1f},{yy - d:.1f}"><title>{tip}</title></path>')
    if not points:
        out.append(f'<text class="empty" x="{(x0 + x1) / 2:.0f}" y="{(y0 + y1) / 2:.0f}">'
                   f"no probe results in this {escape(rng)}</text>")
    out.append("</svg>")
    return "\n".join(out)
