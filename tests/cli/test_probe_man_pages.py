"""man/msprobe.8, man/imsched.8, man/mboxutil.8 document every option of their commands and
render without groff warnings (STYLE §4 rule 12)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from msgsrv.cli import imsched, mboxutil, msprobe

MAN = Path(__file__).resolve().parents[2] / "man"
COMMANDS = {"msprobe": msprobe.command, "imsched": imsched.command, "mboxutil": mboxutil.command}


def options(cmd) -> set[str]:
    return {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])
            if o.startswith("-")}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_in_the_man_page(name):
    text = (MAN / f"{name}.8").read_text().replace("\\-", "-")
    missing = sorted(o for o in options(COMMANDS[name]) | {"-h", "--help"} if o not in text)
    assert missing == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_page_has_no_groff_warnings(name):
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed here")
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN / f"{name}.8")], capture_output=True, text=True)
    assert r.stderr == ""
