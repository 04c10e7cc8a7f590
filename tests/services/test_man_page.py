"""man/msgsrv-server.8 documents what the servers do (STYLE §4 rule 12)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from msgsrv.services.__main__ import MODULES
from msgsrv.services.fault import parse
from tests.test_docs import sections as doc_sections

PAGE = Path(__file__).resolve().parents[2] / "man" / "msgsrv-server.8"


def sections() -> dict[str, str]:
    return doc_sections(PAGE)


def test_page_is_section_8_with_the_usual_sections():
    assert PAGE.read_text().splitlines()[1].startswith(".TH MSGSRV-SERVER 8 ")
    s = sections()
    for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMPONENTS", "FAULT INJECTION", "EXIT STATUS",
                 "ENVIRONMENT", "FILES", "SEE ALSO"):
        assert s.get(name, "").strip(), name


def test_every_component_is_documented():
    text = sections()["COMPONENTS"]
    for component in MODULES:
        assert f".B {component}\n" in text, component


def test_every_fault_mode_is_documented_and_understood():
    text = sections()["FAULT INJECTION"]
    for word, example in (("hang", "hang"), ("slow", "slow 2"), ("crash", "crash")):
        assert word in text
        assert parse(example) is not None
    assert "data/run/fault." in text and "SIGUSR1" in text


def test_page_has_no_groff_warnings():
    if shutil.which("groff") is None:
        pytest.skip("groff(1) is not installed here")
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")
