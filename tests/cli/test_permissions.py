"""A server root that belongs to someone else: every command says which file and whose it is, in one
line, exit 1; never `internal error: PermissionError ...` (the environment is not a bug).

The commands run as root without the capabilities that bypass file permissions (util-linux's
setpriv), on a server root owned by nobody, mode 0700: the same refusals an ordinary user gets.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from msgsrv.errors import file_problem
from tests.conftest import command_path
from tests.integration.conftest import need

pytestmark = pytest.mark.integration  # setpriv (util-linux) and root: under CI=true they must be there

DROP = ["--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture
def foreign_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root, to give the server root to nobody and drop the override capabilities")
    root = tmp_path / "root"
    (root / "config").mkdir(parents=True)
    (root / "data" / "run").mkdir(parents=True)
    for d in (root, root / "config", root / "data", root / "data" / "run"):
        os.chown(d, 65534, 65534)
        d.chmod(0o700)
    return root


def run_without_override(root, *argv: str) -> subprocess.CompletedProcess:
    setpriv = need("setpriv", "util-linux")
    env = {**os.environ, "MSGSRV_BASE": str(root)}
    return subprocess.run([setpriv, *DROP, command_path(argv[0]), *argv[1:]], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("argv, path", [
    (["start-msg"], "config"),
    (["stop-msg"], "data/run/watcher.token"),
    (["configutil", "-o", "local.autorestart", "-v", "no"], "config"),
    (["msprobe"], "config"),
    (["mboxutil", "-l"], "config"),
    (["watcher", "status"], "data/run/watcher.token"),
    (["refresh"], "data/run/watcher.pid"),  # not "neither ... is running": it cannot know
])
def test_a_root_of_another_user_is_one_line_naming_its_owner(foreign_root, argv, path):
    r = run_without_override(foreign_root, *argv)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"{argv[0]}: ") and r.stderr.rstrip().endswith(
        f"{foreign_root / path}: permission denied ({foreign_root} belongs to nobody: run as nobody)"), r.stderr
    assert sorted(p.name for p in foreign_root.iterdir()) == ["config", "data"]  # nothing written


def test_the_line_names_no_owner_when_the_file_is_the_runners_own(tmp_path):
    """The hint is for another user's files only: one's own unreadable file is just `permission
    denied` (root reads it anyway, so the error is made, not provoked)."""
    f = tmp_path / "msg.toml"
    f.write_text("")
    e = PermissionError(13, "Permission denied", str(f))
    assert file_problem(e) == f"{f}: permission denied"
    assert file_problem(FileNotFoundError(2, "No such file or directory", "/nowhere/x")) == \
        "/nowhere/x: no such file or directory"


def test_a_config_directory_one_may_not_write_is_one_line_and_nothing_changes(tmp_path):
    """The runner's own config directory, mode 0500 (tests/unit/config/test_store.py checks the
    same in-process, where it can: not as root). The file keeps its text."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to drop the override capabilities (the unit test covers non-root)")
    root = tmp_path / "root"
    conf = root / "config"
    conf.mkdir(parents=True)
    (conf / "msg.toml").write_text('"local.defdomain" = "a.org"\n')
    conf.chmod(0o500)
    try:
        r = run_without_override(root, "configutil", "-o", "local.defdomain", "-v", "b.org")
    finally:
        conf.chmod(0o700)
    assert r.returncode == 1 and r.stderr == f"configutil: cannot write {conf / 'msg.toml'}: permission denied\n", \
        r.stdout + r.stderr
    assert (conf / "msg.toml").read_text() == '"local.defdomain" = "a.org"\n'
