"""config/msg.toml that cannot be read at all (a directory in its place: a botched deployment):
the watcher keeps the last configuration that parsed and says why in the words the commands use,
and every command says the same in one line, exit 1, never `internal error: StoreError`."""

from __future__ import annotations

import shutil

import pytest

from msgsrv import messages as M
from tests.watcher.conftest import STORE, wait_for


@pytest.fixture
def unreadable(suite, cli, root):
    suite.configure(**{f"local.{c}.command": "" for c in STORE})  # built-in servers: they read the file
    assert cli("start-msg").returncode == 0
    good = root.config_file.read_text()
    root.config_file.unlink()
    root.config_file.mkdir()
    yield f"unable to read {root.config_file}: is a directory"
    if root.config_file.is_dir():
        shutil.rmtree(root.config_file)
        root.config_file.write_text(good)


def test_the_watcher_keeps_the_last_good_configuration_and_says_why(suite, root, unreadable):
    old = suite.pids("imap")
    suite.kill(old[0])
    waiting = M.WAITING_FOR_CONFIG.format(units="store imap pop http", path=root.config_file)
    wait_for(lambda: waiting in suite.log_lines())
    assert M.CONFIG_BROKEN.format(reason=unreadable) in suite.log_lines()
    assert suite.status()["imap"]["state"] == "BACKOFF"


@pytest.mark.parametrize("argv", [["msprobe", "-q"], ["imsched"], ["configutil", "-o", "local.autorestart"]])
def test_every_command_says_it_in_one_line(cli, unreadable, argv):
    r = cli(*argv, timeout=30)
    assert r.returncode == 1 and r.stderr == f"{argv[0]}: {unreadable}\n", r.stdout + r.stderr
