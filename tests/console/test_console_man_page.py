"""man/msgsrv-console.8 documents every route the console serves, and renders cleanly."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from msgsrv.config import catalogue
from msgsrv.console.app import make_app
from tests.test_docs import man_l

PAGE = Path(__file__).resolve().parents[2] / "man" / "msgsrv-console.8"


def text() -> str:
    """The page as running text: roff escapes and font changes removed."""
    t = PAGE.read_text().replace("\\-", "-").replace("\\&", "").replace("\\e", "\\")
    return re.sub(r"\\f[BIRP]", "", t)


class _Backend:
    root = None


def routes() -> set[tuple[str, str]]:
    app = make_app(_Backend(), "token")
    out = set()
    for r in app.router.routes():
        info = r.resource.get_info() if r.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if r.method != "HEAD":
            out.add((r.method, path))
    return out


def test_every_route_is_documented():
    page = re.sub(r'"', "", text())
    for method, path in sorted(routes()):
        if path.startswith("/static"):
            assert "/static/" in page
            continue
        shown = re.sub(r"\{(\w+)\}", r"\1", path)  # /api/units/{unit}/restart -> /api/units/unit/restart
        documented = shown in page.replace(" ", "") or f"{method} {shown}" in page
        assert documented, f"{method} {path} is not in {PAGE.name}"


def test_configuration_rows_are_documented():
    for name in ("local.watcher.httpport", "local.watcher.httpaddr"):
        p = catalogue.lookup(name)
        assert p is not None and name in text()
        assert p.default in text()


def test_page_renders_with_man_and_has_no_groff_warnings():
    if shutil.which("groff") is None:
        pytest.skip("groff(1) is not installed here")
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")
    out = man_l(PAGE)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.startswith("MSGSRV-CONSOLE(8)")
    assert "Received request to restart:  store imap pop http (console, 127.0.0.1)" in out.stdout


def test_timeline_groups_are_documented_as_the_console_uses_them():
    from msgsrv.console import timeline

    page = " ".join(text().split())
    for group, kinds in timeline.GROUPS.items():
        if len(kinds) > 1:
            assert f"{group}: {' '.join(kinds)}" in page, group
        else:
            assert f"{group};" in page, group
