"""Shell completion (click's): every command prints a completion script for bash, zsh and fish."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import command_path

COMMANDS = ("configutil", "start-msg", "stop-msg", "watcher", "msprobe", "imsched", "mboxutil")


def env_var(cmd: str) -> str:
    return "_" + cmd.upper().replace("-", "_") + "_COMPLETE"


@pytest.mark.parametrize("cmd", COMMANDS)
def test_bash_completion_script_is_printed(cmd):
    r = subprocess.run([command_path(cmd)], capture_output=True, text=True, timeout=30,
                       env={**os.environ, env_var(cmd): "bash_source"})
    assert r.returncode == 0, r.stderr
    func = "_" + cmd.replace("-", "_") + "_completion"
    assert f"{func}() {{" in r.stdout
    assert f"complete -o nosort -F {func} {cmd}" in r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_get_a_script_too(shell):
    r = subprocess.run([command_path("configutil")], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "_CONFIGUTIL_COMPLETE": f"{shell}_source"})
    assert r.returncode == 0, r.stderr
    assert "configutil" in r.stdout and r.stdout.strip()


def test_completion_offers_options(tmp_path):
    r = subprocess.run([command_path("configutil")], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "_CONFIGUTIL_COMPLETE": "bash_complete", "COMP_WORDS": "configutil -",
                            "COMP_CWORD": "1", "MSGSRV_BASE": str(tmp_path / "root")})
    assert r.returncode == 0, r.stderr
    assert "plain,-o" in r.stdout.splitlines()
