"""msprobe: one probe pass over the enabled servers (or the ones named), or the history.

Thin: parse, call probe.runner.run_pass / probe.history, render. rich is imported only when
stdout is a terminal.
"""

from __future__ import annotations

import json
import sys

import click

PROG = "msprobe"
SERVICES = ("imap", "pop", "http", "cert", "job_controller", "smtp", "lmtp", "mmp", "ens", "store", "sched",
            "imaps", "pops", "https", "smtps", "watcher")


def _console():
    from rich.console import Console

    return Console(markup=False, highlight=False, emoji=False)


def _plain_results(outcomes) -> None:
    for o in outcomes:
        t, r = o.target, o.result
        extra = f"  {r.detail}" if o.status.value in ("HUNG", "DOWN") else ""
        click.echo(f"{t.service:<15} {t.port:>5} {r.elapsed:>9.3f}s  {o.status.value}{extra}")


def _rich_results(outcomes) -> None:
    from rich.table import Table

    styles = {"OK": "green", "WARN": "yellow", "HUNG": "bold red", "DOWN": "bold red"}
    table = Table("service", "port", "response time", "status", "detail")
    for o in outcomes:
        t, r = o.target, o.result
        table.add_row(t.service, str(t.port), f"{r.elapsed:.3f}s", o.status.value,
                      r.detail if not o.status.healthy else "", style=styles[o.status.value])
    _console().print(table)


def _watcher_line(w) -> None:
    if w is None:
        return
    extra = f"  {w.detail}" if w.detail and w.status != "OK" else ""
    click.echo(f"{'watcher':<15} {w.port:>5} {w.elapsed:>9.3f}s  {w.status}{extra}")


def _disk_lines(disks) -> None:
    for d in disks:
        pct = "?" if d.free_percent is None else f"{d.free_percent:.1f}%"
        state = "LOW" if d.low else "OK"
        click.echo(f"disk {d.name:<10} {pct:>7} free  {state}  {d.path}")


def _history(root, services: list[str], as_json: bool) -> int:
    from msgsrv.config.store import ConfigStore
    from msgsrv.probe.history import History

    days = ConfigStore(root.config_file).get_float("local.probe.history.days", 30.0)
    summaries = History(root.history_db, days).summaries(services or None)
    if as_json:
        click.echo(json.dumps({"history": [s.to_dict() for s in summaries]}, indent=2))
        return 0
    if not summaries:
        click.echo("no history recorded", err=True)
        return 1 if services else 0
    if sys.stdout.isatty():
        from rich.table import Table

        table = Table("series", "samples", "failures", "min", "median", "max", "last", "chart")
        for s in summaries:
            table.add_row(s.series, str(s.count), str(s.failures), f"{s.min:.3f}", f"{s.median:.3f}",
                          f"{s.max:.3f}", f"{s.last:.3f}", s.spark)
        _console().print(table)
    else:
        for s in summaries:
            click.echo(f"{s.series:<15} n={s.count} failed={s.failures} min={s.min:.3f} median={s.median:.3f} "
                       f"max={s.max:.3f} last={s.last:.3f} {s.spark}")
    return 0


def _test_alarm(root, quiet: bool) -> int:
    import time

    from msgsrv.config.store import ConfigStore
    from msgsrv.probe.alarms import send_test_alarm

    root.ensure()
    notice, failed = send_test_alarm(root, ConfigStore(root.config_file), time.time())
    if failed:
        click.echo(f"{PROG}: {failed}", err=True)
        return 1
    if not quiet:
        click.echo(f"test alarm mail sent to {notice.rcpt} through {notice.host}:{notice.port}")
    return 0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("services", nargs=-1, type=click.Choice(SERVICES), metavar="[SERVICE]...")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; the exit status tells.")
@click.option("--history", is_flag=True,
              help="Show min/median/max response times and a chart from the counter database.")
@click.option("--test-alarm", "test_alarm", is_flag=True,
              help="Send one alarm mail now to check where alarms go (no probes).")
def command(services: tuple[str, ...], as_json: bool, quiet: bool, history: bool, test_alarm: bool) -> int:
    """Probe the enabled mail servers with their own protocols and measure their response times.

    SERVICE is one of imap pop http cert job_controller smtp lmtp mmp ens store sched (and their
    TLS ports imaps pops https smtps), or watcher; without one, every enabled server and the
    watcher itself are probed (a watcher that died or hangs while servers run is launched again
    when local.autorestart is yes). A server slower than its warning threshold is logged as
    a warning; one that does not answer within its timeout is logged as an error and, when
    local.autorestart is yes, restarted by the watcher. Exit status: 0 all healthy, 1 otherwise,
    2 usage error.
    """
    import asyncio

    from msgsrv.paths import ServerRoot
    from msgsrv.probe.runner import run_pass

    root = ServerRoot.from_env()
    names = list(dict.fromkeys(services))
    if history:
        return _history(root, names, as_json)
    if test_alarm:
        return _test_alarm(root, quiet)

    tty = sys.stdout.isatty()

    def show(outcomes) -> None:
        if quiet or as_json:
            return
        _rich_results(outcomes) if tty else _plain_results(outcomes)
        sys.stdout.flush()

    report = asyncio.run(run_pass(root, names or None, on_verdicts=show))
    if as_json and not quiet:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif not quiet:
        _watcher_line(report.watcher)
        _disk_lines(report.disks)
    if not quiet:
        for line in report.errors:
            click.echo(f"{PROG}: {line}", err=True)
    return 0 if report.healthy else 1


def main(argv: list[str] | None = None) -> int:
    from msgsrv.cli.main import run

    return run(command, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
