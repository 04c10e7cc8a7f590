"""The only module that imports rich: tables and colour on a TTY, plain text when piped."""

from __future__ import annotations

import os
import sys


def is_tty(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def print_table(title: str | None, columns: list[str], rows: list[list[str]], styles: dict | None = None) -> None:
    """A rich table on a TTY; tab-free aligned plain columns otherwise."""
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for c in columns:
            table.add_column(c)
        for r in rows:
            style = (styles or {}).get(r[0])
            table.add_row(*r, style=style)
        Console(markup=False, highlight=False, emoji=False).print(table)
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")


lost: OSError | None = None  # why the progress lines could not be written (said once, at the end)
line_open = False  # a progress line is begun and not ended (an interrupt ends it)
handed_over: str | None = None  # what the watcher was asked to do ("start", "stop"): it goes on without us


def progress(kind: str, text: str) -> None:
    """Show a watcher progress message: T = text without newline, L = end of line. Standard
    output that cannot be written (a full disk, a closed pipe's reader gone) costs the lines,
    never the start or stop they tell of: the rest is dropped and `lost` says why."""
    global lost, line_open
    if lost is not None:
        return
    line_open = kind == "T"
    try:
        sys.stdout.write(text if kind == "T" else text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError) as e:
        lost = e if isinstance(e, OSError) else OSError(str(e))
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more to write, nor at exit
