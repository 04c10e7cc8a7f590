"""The full configutil command (click). main() in configutil.py loads it when the fast path can't answer."""

from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path

import click

from msgsrv.config import catalogue, rules
from msgsrv.config.store import ConfigStore, StoreError
from msgsrv.errors import OperationFailed, UsageError
from msgsrv.paths import ServerRoot

EPILOG = """\b
Examples:
  configutil -o local.autorestart -v yes     set a parameter
  configutil -o local.autorestart            print its value (nothing if unset)
  configutil -H -o local.autorestart.timeout print its default
  configutil -d -o local.autorestart         delete the override
  configutil -p 'service.*' -m               list, with refreshability
  configutil -i settings.txt                 import name=value lines (all or nothing)
  configutil -V                              validate the whole store
"""


def _quote(value: str) -> str:
    if value == "" or any(ch.isspace() for ch in value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _matches(name: str, pattern: str | None) -> bool:
    if not pattern:
        return True
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name.startswith(pattern)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _parse_import(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"unable to read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"unable to read {path}: not UTF-8 text") from None
    items: dict[str, str] = {}
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise UsageError(f"{path}:{no}: expected name=value, got '{line}'")
        name, value = (s.strip() for s in line.split("=", 1))
        value = _unquote(value)
        try:
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
@click.option("-H", "defaults", is_flag=True, help="Show defaults (alone: the whole catalogue).")
@click.option("-m", "marks", is_flag=True, help="Append [REFRESHABLE] or [NOT REFRESHABLE].")
@click.option("-p", "pattern", metavar="PATTERN", help="List parameters by prefix or glob (service.imap, '*.port').")
@click.option("-i", "import_file", metavar="FILE", type=click.Path(path_type=Path),
              help="Import name=value lines from FILE; all or nothing.")
@click.option("-f", "store_file", metavar="FILE", type=click.Path(path_type=Path),
              help="Use FILE as the store instead of config/msg.toml.")
@click.option("-V", "validate", is_flag=True, help="Validate every stored value; exit 1 if any is bad.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(option, value, delete, defaults, marks, pattern, import_file, store_file, validate, as_json):
    """List and change msgsrv configuration parameters.

    With no options, lists every parameter that is set, as `name = value` lines sorted by name.
    """
    if store_file is None:
        root = ServerRoot.from_env()
        store_file = root.config_file
        if value is not None or delete or import_file is not None:
            root.ensure()
    store = ConfigStore(store_file)
    try:
        if value is not None or delete:
            if option is None:
                raise UsageError(f"{'-v' if value is not None else '-d'} needs -o NAME")
            if value is not None and delete:
                raise UsageError("-v and -d cannot be used together")
            return _set_or_delete(store, option, value, delete)
        if import_file is not None:
            items = _parse_import(import_file)
            store.update(items, validate=_validate(list(items)))
            return 0
        if validate:
            return _validate_store(store)
        if option is not None:
            return _get(store, option, defaults, as_json)
        return _list(store, pattern, defaults, marks, as_json)
    except StoreError as e:
        raise OperationFailed(str(e)) from None


def _set_or_delete(store: ConfigStore, name: str, value: str | None, delete: bool) -> int:
    if delete:
        if name not in store.overrides():
            try:
                rules.check_name(name)
            except ValueError as e:
                raise UsageError(str(e)) from None
            return 0
        store.update(deletes=[name], validate=_validate([name]))
        return 0
    try:
        rules.check_value(name, value)
    except ValueError as e:
        raise UsageError(str(e)) from None
    store.update({name: value}, validate=_validate([name]))
    return 0


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


def _rows(store: ConfigStore, defaults: bool) -> list[tuple[str, str, catalogue.Parameter | None]]:
    if defaults:
        return [(p.name, p.default or "", p) for p in catalogue.PARAMETERS]
    return [(n, v, catalogue.lookup(n)) for n, v in store.overrides().items()]


def _list(store: ConfigStore, pattern: str | None, defaults: bool, marks: bool, as_json: bool) -> int:
    rows = sorted(r for r in _rows(store, defaults) if _matches(r[0], pattern))
    if as_json:
        click.echo(json.dumps([
            {"name": n, "value": v, "type": p.type if p else None,
             "refreshable": p.refreshable if p else None} for n, v, p in rows], indent=2))
        return 0
    out = []
    for n, v, p in rows:
        line = f"{n} = {_quote(v)}"
        if marks:
            line += " [REFRESHABLE]" if p is not None and p.refreshable else " [NOT REFRESHABLE]"
        out.append(line + "\n")
    sys.stdout.write("".join(out))
    return 0


def _validate_store(store: ConfigStore) -> int:
    problems = rules.validate_all(store.overrides())
    for line in problems:
        click.echo(f"configutil: {line}", err=True)
    return 1 if problems else 0
