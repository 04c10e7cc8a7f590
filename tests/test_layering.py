"""Core code never prints through click or rich: only msgsrv/cli/ imports them (STYLE §3)."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "msgsrv"
UI = {"click", "rich"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_cli_imports_click_or_rich():
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if "cli" not in p.relative_to(PKG).parts and _imports(p) & UI]
    assert offenders == []


def test_rich_is_imported_only_by_the_console_and_command_modules():
    users = sorted(p.name for p in (PKG / "cli").glob("*.py") if "rich" in _imports(p))
    assert "configutil.py" not in users and "main.py" not in users
