"""Integrations (issue 7): metrics, OCF, systemd, completion, real daemons.

The `suite` fixture is the watcher suite of tests/watcher (stand-in servers on free ports); the
real-daemon tests configure their own components on top of a fresh server root.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.watcher.conftest import suite  # noqa: F401  (the same fixture)

INTEGRATIONS = Path(__file__).resolve().parents[2] / "msgsrv" / "integrations"


def need(binary: str, package: str) -> str:
    """The path of BINARY, or skip the test naming the Debian package that provides it."""
    path = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}")
                                         if os.access(p, os.X_OK)), None)
    if not path:
        pytest.skip(f"{binary} not installed (Debian package {package}; scripts/ci-deps.sh installs it)")
    return path
