import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from probe_fakes import FakeServers  # noqa: E402


@pytest.fixture
def fakes():
    with FakeServers() as fs:
        yield fs
