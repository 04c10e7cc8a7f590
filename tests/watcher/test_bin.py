"""bin/: one 3-line shim per command, so every command runs from a checkout (issue 10; STYLE §3)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import REPO

BIN = REPO / "bin"
SHIMS = sorted(p.name for p in BIN.iterdir())
SHAPE = re.compile(
    r"#!/usr/bin/env python3\n"
    r"import os, sys; sys\.path\.insert\(0, os\.path\.dirname\(os\.path\.dirname\(os\.path\.realpath\(__file__\)\)\)\)"
    r"  # noqa: E401,E702\n"
    r"from (msgsrv(?:\.\w+)+) import main; sys\.exit\(main\(\)\)  # noqa: E402,E702\n")


def scripts() -> dict[str, str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return data["project"]["scripts"]


def test_every_command_has_a_shim():
    assert sorted(scripts()) == SHIMS


@pytest.mark.parametrize("name", SHIMS)
def test_shim_is_three_identical_lines_naming_its_entry_point(name):
    path = BIN / name
    assert os.access(path, os.X_OK)
    m = SHAPE.fullmatch(path.read_text())
    assert m, path.read_text()
    assert scripts()[name] == f"{m.group(1)}:main"


@pytest.mark.parametrize("name", SHIMS)
def test_shim_runs_from_the_checkout_with_help(name, tmp_path):
    # run with this interpreter (it has the dependencies); the shim puts the checkout first on sys.path
    env = dict(os.environ, MSGSRV_BASE=str(tmp_path / "root"), PYTHONPATH="")
    r = subprocess.run([sys.executable, str(BIN / name), "--help"], capture_output=True, text=True,
                       timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.lower().startswith("usage:") and r.stderr == ""
