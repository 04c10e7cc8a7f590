"""msgsrv/atomicfile.py: a reader sees the old file or the new one; durable writes reach the disk."""

from __future__ import annotations

import os
import stat

import pytest

from msgsrv.atomicfile import write_atomic


@pytest.mark.parametrize("durable", [True, False])
def test_write_atomic_replaces_the_file_owner_only_and_leaves_no_temporary(tmp_path, monkeypatch, durable):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "x.pid"
    path.write_text("old")
    write_atomic(path, '[{"pid": 1}]', durable=durable)
    assert path.read_text() == '[{"pid": 1}]'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["x.pid"]
    # durable: the file before the rename and the directory after it; a record of this boot only
    # (pid files, the run record): the rename alone, no fsync
    assert len(synced) == (2 if durable else 0)
