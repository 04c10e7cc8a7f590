"""The full configutil command (click). main() in configutil.py loads it when the fast path can't answer."""

from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path

import click

from msgsrv.config import catalogue, listing, rules
from msgsrv.config.store import ConfigStore, StoreError
from msgsrv.errors import OperationFailed, UsageError
from msgsrv.paths import ServerRoot

WATCHER_PORT = "local.watcher.port"
EPILOG = """\b
Examples:
  configutil -o local.autorestart -v yes     set a parameter
  configutil -o local.autorestart            print its value (nothing if unset)
  configutil                                 every parameter and its value ([DEFAULT] if not set)
  configutil -O                              only the parameters that are set
  configutil -H -o local.autorestart.timeout print its default
  configutil -H -m -p service.               the catalogue: defaults, refreshability, types, ranges
  configutil -d -o local.autorestart         delete the override
  configutil -i settings.txt                 import name=value lines (all or nothing)
  configutil -V                              validate the whole store
"""


def _matches(name: str, pattern: str | None) -> bool:
    if not pattern:
        return True
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name.startswith(pattern)


def _parse_import(path: Path) -> dict[str, str]:
    """NAME=VALUE lines of PATH (configutil's own listings included); `[DEFAULT]` lines are
    skipped: a default is not an override, and importing a listing pins nothing new."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"unable to read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"unable to read {path}: not UTF-8 text") from None
    items: dict[str, str] = {}
    for no, raw in enumerate(text.split("\n"), 1):
        try:
            parsed = listing.parse_line(raw)
            if parsed is None or listing.DEFAULT in parsed[2]:
                continue
            name, value, _ = parsed
            rules.check_value(name, value)
        except ValueError as e:
            raise UsageError(f"{path}:{no}: {e}") from None
        items[name] = value
    return items


def _validate(changed: list[str]):
    def check(after: dict[str, str]) -> None:
        try:
            rules.validate_change(after, changed)
        except ValueError as e:
            raise UsageError(str(e)) from None

    return check


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-o", "option", metavar="NAME", help="The parameter to show, set (-v) or delete (-d).")
@click.option("-v", "value", metavar="VALUE", help='Set NAME to VALUE (-v "" stores an empty value).')
@click.option("-d", "delete", is_flag=True, help="Delete the override of NAME (back to its default).")
@click.option("-H", "defaults", is_flag=True, help="Show defaults (alone: the whole catalogue; with -m: types and ranges).")
@click.option("-m", "marks", is_flag=True, help="Append [REFRESHABLE] or [NOT REFRESHABLE].")
@click.option("-O", "--overrides", "overrides_only", is_flag=True,
              help="List only the parameters that are set (the store's overrides).")
@click.option("-p", "pattern", metavar="PATTERN", help="List parameters by prefix or glob (service.imap, '*.port').")
@click.option("-i", "import_file", metavar="FILE", type=click.Path(path_type=Path),
              help="Import name=value lines from FILE; all or nothing.")
@click.option("-f", "store_file", metavar="FILE", type=click.Path(path_type=Path),
              help="Use FILE as the store instead of config/msg.toml.")
@click.option("-V", "validate", is_flag=True, help="Validate every stored value; exit 1 if any is bad.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(option, value, delete, defaults, marks, overrides_only, pattern, import_file, store_file, validate,
            as_json):
    """List and change msgsrv configuration parameters.

    With no options, lists every parameter with its effective value as `name = value` lines
    sorted by name; a parameter that is not set shows its default, marked [DEFAULT].
    """
    writing = value is not None or delete or import_file is not None
    root = None
    if store_file is None:
        root = ServerRoot.from_env()
        store_file = root.config_file
        if writing:
            root.ensure()
    elif writing and not store_file.parent.is_dir():
        raise UsageError(f"unable to write {store_file}: no such directory {store_file.parent}")
    store = ConfigStore(store_file)
    try:
        if value is not None or delete:
            if option is None:
                raise UsageError(f"{'-v' if value is not None else '-d'} needs -o NAME")
            if value is not None and delete:
                raise UsageError("-v and -d cannot be used together")
            return _set_or_delete(store, root, option, value, delete)
        if import_file is not None:
            items = _parse_import(import_file)
            before = store.effective_text(WATCHER_PORT) if root is not None and WATCHER_PORT in items else None
            held = _held(store, root, list(items))
            store.update(items, validate=_validate(list(items)))
            _port_notice(store, root, before)
            _restart_notice(store, root, held)
            return 0
        if validate:
            return _validate_store(store)
        if option is not None:
            return _get(store, option, defaults, as_json)
        return _list(store, pattern, defaults, marks, overrides_only, as_json)
    except StoreError as e:
        raise OperationFailed(str(e)) from None


def _set_or_delete(store: ConfigStore, root: ServerRoot | None, name: str, value: str | None, delete: bool) -> int:
    before = store.effective_text(WATCHER_PORT) if root is not None and name == WATCHER_PORT else None
    held = _held(store, root, [name])
    if delete:
        if name not in store.overrides():
            try:
                rules.check_name(name)
            except ValueError as e:
                raise UsageError(str(e)) from None
            return 0
        store.update(deletes=[name], validate=_validate([name]))
    else:
        try:
            rules.check_value(name, value)
        except ValueError as e:
            raise UsageError(str(e)) from None
        store.update({name: value}, validate=_validate([name]))
    _port_notice(store, root, before)
    _restart_notice(store, root, held)
    return 0


def held_parameters() -> dict[str, str]:
    """parameter -> component, for what a running server keeps from its start until it restarts:
    its ports and its number of workers (not refreshable)."""
    from msgsrv.components import COMPONENTS

    out = {}
    for c in COMPONENTS:
        for p in [p for _, p in c.ports] + ([c.workers] if c.workers else []):
            param = rules.check_name(p)
            if not param.refreshable:
                out[p] = c.name
    return out


def _held(store: ConfigStore, root: ServerRoot | None, names: list[str]) -> dict[str, tuple[str, str | None]]:
    """NAMES that a running server keeps (held_parameters): name -> (component, value before)."""
    if root is None:
        return {}
    held = held_parameters()
    return {n: (held[n], store.effective_text(n)) for n in names if n in held}


def _restart_notice(store: ConfigStore, root: ServerRoot | None, held: dict[str, tuple[str, str | None]]) -> None:
    """A running server keeps its ports and workers until it restarts: say so when they change,
    with the value in force and how to apply the new one (original: [NOT REFRESHABLE])."""
    if not held:
        return
    from msgsrv.daemons import running_pids

    by_component: dict[str, list[str]] = {}
    for name, (component, before) in held.items():
        if store.effective_text(name) != before:
            by_component.setdefault(component, []).append(f"{name} {before or '(unset)'}")
    for c, kept in by_component.items():
        pids = running_pids(root, c)
        if pids:
            click.echo(f"configutil: the running {c} server (pid {pids[0]}) keeps {', '.join(kept)} until it "
                       f"restarts: stop-msg {c}; start-msg {c}", err=True)


def _port_notice(store: ConfigStore, root: ServerRoot | None, before: str | None) -> None:
    """A running watcher keeps the port it bound: say so when local.watcher.port changes."""
    if before is None or root is None:
        return
    after = store.effective_text(WATCHER_PORT)
    if after == before:
        return
    from msgsrv.control.runrecord import live_watcher

    running = live_watcher(root.run_dir)  # the port it bound: not the config's value before this change
    if running is not None and str(running.get("port")) != (after or "49994"):
        click.echo(f"configutil: the watcher (pid {running['pid']}) keeps listening on port {running.get('port')}; "
                   f"the new port {after or '(default)'} takes effect at the next watcher start", err=True)


def _get(store: ConfigStore, name: str, defaults: bool, as_json: bool) -> int:
    try:
        p = rules.check_name(name)
    except ValueError as e:
        if name not in store.overrides():
            raise UsageError(str(e)) from None
        p = None
    v = (p.default if p else None) if defaults else store.get_text(name)
    if as_json:
        click.echo(json.dumps({"name": name, "value": v}))
    elif v is not None:
        click.echo(v)
    return 0


Row = tuple[str, str, "catalogue.Parameter | None", bool]  # name, value, row, is the default


def _rows(store: ConfigStore, defaults: bool, overrides_only: bool) -> list[Row]:
    if defaults:
        return [(p.name, p.default or "", p, True) for p in catalogue.PARAMETERS]
    overrides = store.overrides()
    rows = {n: (n, v, catalogue.lookup(n), False) for n, v in overrides.items()}
    if not overrides_only:
        for p in catalogue.EXACT.values():
            rows.setdefault(p.name, (p.name, p.default or "", p, True))
    return list(rows.values())


def _list(store: ConfigStore, pattern: str | None, defaults: bool, marks: bool, overrides_only: bool,
          as_json: bool) -> int:
    rows = sorted((r for r in _rows(store, defaults, overrides_only) if _matches(r[0], pattern)),
                  key=lambda r: r[0])
    if as_json:
        out = []
        for n, v, p, is_default in rows:
            item = {"name": n, "value": v, "default": is_default, "type": p.type if p else None,
                    "refreshable": p.refreshable if p else None}
            if defaults and p is not None:
                item.update({"min": p.lo, "max": p.hi})
            out.append(item)
        click.echo(json.dumps(out, indent=2))
        return 0
    lines = []
    for n, v, p, is_default in rows:
        tags: list[str] = []
        if is_default and not defaults:
            tags.append(listing.DEFAULT)
        if marks:
            tags.append(listing.REFRESHABLE if p is not None and p.refreshable else listing.NOT_REFRESHABLE)
        line = listing.format_line(n, v, tuple(tags))
        if marks and defaults and p is not None:
            line += f" [{catalogue.describe(p)}]"
        lines.append(line + "\n")
    sys.stdout.write("".join(lines))
    return 0


def _validate_store(store: ConfigStore) -> int:
    problems = rules.validate_all(store.overrides())
    for line in problems:
        click.echo(f"configutil: {line}", err=True)
    return 1 if problems else 0
