"""msgsrv/integrations/systemd/msgsrv.service: `systemd-analyze verify` on the unit as installed.

The install command rewrites /usr/local/bin to the directory of the msgsrv commands; the test does
the same with the commands under test, and points MANPATH at the repository's man pages so that the
unit's Documentation= links are checked too (with `--man=no` when man(1) is missing).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO, command_path
from tests.integration.conftest import INTEGRATIONS, need

UNIT = INTEGRATIONS / "systemd" / "msgsrv.service"
BINDIR = str(Path(command_path("start-msg")).parent)


def installed(tmp_path: Path) -> Path:
    """The unit as the documented install command writes it."""
    dest = tmp_path / "msgsrv.service"
    dest.write_text(UNIT.read_text().replace("/usr/local/bin", BINDIR))
    return dest


def test_unit_starts_with_start_msg_and_stops_with_stop_msg(tmp_path):
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string(installed(tmp_path).read_text())
    svc = unit["Service"]
    assert svc["Type"] == "forking"
    assert svc["ExecStart"] == f"{BINDIR}/start-msg"
    assert svc["ExecStop"] == f"{BINDIR}/stop-msg"
    assert svc["Environment"] == "MSGSRV_BASE=/var/lib/msgsrv"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    for page in unit["Unit"]["Documentation"].split():
        name = page.removeprefix("man:").replace("(8)", ".8")
        assert (REPO / "man" / name).exists(), page


def test_systemd_analyze_verify_passes(tmp_path):
    analyze = need("systemd-analyze", "systemd")
    man = tmp_path / "man" / "man8"
    man.mkdir(parents=True)
    for page in (REPO / "man").glob("*.8"):
        shutil.copy(page, man)
    argv = [analyze, "verify"]
    if not shutil.which("man"):
        argv.append("--man=no")
    r = subprocess.run([*argv, str(installed(tmp_path))], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MANPATH": str(tmp_path / "man")})
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
