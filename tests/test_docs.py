"""Docs are checked like code (STYLE §4 rule 12): man pages against the click commands, and the
CHANGELOG's top entry against msgsrv.__version__."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

import msgsrv
from msgsrv.cli.configutil_cmd import command as configutil_command

REPO = Path(__file__).resolve().parent.parent
MAN = REPO / "man"
CHANGELOG = REPO / "CHANGELOG.md"


def roff_text(page: Path) -> str:
    """The page with roff's escaped minus signs as plain '-'."""
    return page.read_text(encoding="utf-8").replace("\\-", "-")


def sections(page: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    name = None
    for line in roff_text(page).splitlines():
        if line.startswith(".SH "):
            name = line[4:].strip().strip('"')
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    return out


def click_options(cmd) -> set[str]:
    opts = set()
    for param in cmd.get_params(cmd.make_context("x", [], resilient_parsing=True)):
        opts.update(param.opts)
        opts.update(param.secondary_opts)
    return opts


def has_option(text: str, opt: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text) is not None


# -- configutil(8) ---------------------------------------------------------------------
PAGE = MAN / "configutil.8"


def test_configutil_page_is_section_8():
    assert roff_text(PAGE).splitlines()[1].startswith(".TH CONFIGUTIL 8 ")


def test_every_configutil_option_is_in_the_man_page():
    opts = click_options(configutil_command)
    assert {"-o", "-v", "-d", "-H", "-m", "-p", "-i", "-f", "-V", "--json", "-h", "--help"} <= opts
    options = sections(PAGE)["OPTIONS"]
    missing = sorted(o for o in opts if not has_option(options, o))
    assert missing == [], f"options missing from OPTIONS in {PAGE}"
    synopsis = sections(PAGE)["SYNOPSIS"]
    assert sorted(o for o in opts if o.startswith("-") and not o.startswith("--") and o != "-h"
                  and not has_option(synopsis, o)) == []


def test_man_page_documents_no_option_that_does_not_exist():
    opts = click_options(configutil_command)
    lines = sections(PAGE)["OPTIONS"].splitlines()
    documented = set()
    for tag, line in zip(lines, lines[1:], strict=False):
        if tag == ".TP":
            documented.update(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", line))
    assert documented and documented <= opts, documented - opts


@pytest.mark.parametrize("section", ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT",
                                     "FILES", "EXAMPLES", "SEE ALSO"])
def test_configutil_page_has_section(section):
    assert sections(PAGE)[section].strip()


def plain(roff: str) -> str:
    """Roff source as running text: font macros resolved, other requests dropped."""
    out = []
    for line in roff.splitlines():
        if line.startswith((".BR ", ".RB ", ".BI ", ".IB ", ".IR ", ".RI ")):
            out.append("".join(shlex.split(line[4:])))
        elif line.startswith((".B ", ".I ")):
            out.append(" ".join(shlex.split(line[3:])))
        elif not line.startswith("."):
            out.append(line)
    return re.sub(r"\\f[BIRP]", "", " ".join(out))


def test_configutil_page_content():
    s = {name: plain(text) for name, text in sections(PAGE).items()}
    assert "yes/no, on/off or 1/0" in s["DESCRIPTION"]  # the boolean spellings
    assert "An integer from 1 to 65535." in s["DESCRIPTION"]
    assert "five crontab fields and a command" in s["DESCRIPTION"]
    assert "a plain number of seconds and a command" in s["DESCRIPTION"]
    assert "local.autorestart.timeout must be at least the longest gap" in s["DESCRIPTION"]
    for status in ("0 Success", "1 The operation failed", "2 Usage error"):
        assert status in s["EXIT STATUS"], status
    for f in ("$MSGSRV_BASE/config/msg.toml ", "msg.toml.lock", ".msg.toml.cache"):
        assert f in s["FILES"], f
    assert "$ configutil -o local.autorestart -v yes" in sections(PAGE)["EXAMPLES"]
    assert "MSGSRV_BASE" in s["ENVIRONMENT"]


def man_l(page: Path) -> subprocess.CompletedProcess:
    """`man -l PAGE` rendered 80 columns wide (skips where man(1) is not installed)."""
    if shutil.which("man") is None:
        pytest.skip("man(1) is not installed here")
    env = dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8")
    return subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, env=env)


def test_configutil_page_renders_with_man_l():
    r = man_l(PAGE)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith("CONFIGUTIL(8)")
    assert "configutil - list and change msgsrv configuration parameters" in r.stdout
    assert "EXIT STATUS" in r.stdout


def test_configutil_page_has_no_groff_warnings():
    if shutil.which("groff") is None:
        pytest.skip("groff(1) is not installed here")
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")


# -- every page in man/ ----------------------------------------------------------------------
PAGES = sorted(MAN.glob("*.[1-8]"))


def test_every_command_has_a_page():
    names = {p.name for p in PAGES}
    for cmd in ("configutil", "start-msg", "stop-msg", "watcher", "msprobe", "imsched", "mboxutil", "msgsrv-server"):
        assert f"{cmd}.8" in names, cmd


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_renders_with_man_l_and_groff_without_warnings(page):
    for tool in ("man", "groff"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool}(1) is not installed here (Debian package {'man-db' if tool == 'man' else 'groff'})")
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")
    env = dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8")
    r = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, env=env)
    assert (r.returncode, r.stderr) == (0, "")
    title = re.search(r"^\.TH (\S+) (\d)", page.read_text(encoding="utf-8"), re.M)
    assert title and r.stdout.startswith(f"{title[1]}({title[2]})"), r.stdout[:80]
    assert "NAME" in r.stdout and "SYNOPSIS" in r.stdout


# -- CHANGELOG.md ------------------------------------------------------------------------
def test_changelog_top_entry_is_the_version():
    assert CHANGELOG.exists(), f"{CHANGELOG} is missing: its top entry must be version {msgsrv.__version__}"
    versions = [m.group(1) for m in re.finditer(r"^## \[?([^\]\s]+)\]?", CHANGELOG.read_text(), re.M)
                if m.group(1).lower() != "unreleased"]
    assert versions, f"{CHANGELOG} has no '## [x.y.z]' entry"
    assert versions[0] == msgsrv.__version__
