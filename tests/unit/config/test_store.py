"""msgsrv/config/store.py: round trips, hand-written layout, atomic writes and the derived cache."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib

import pytest

from msgsrv.config import store as store_mod
from msgsrv.config.store import ConfigStore, StoreError, cache_path, cached_get

HAND_WRITTEN = """\
# msg.toml -- written by hand

# restart policy
"local.autorestart" = "no"   # off until the probes are tuned

"local.defdomain" = "example.org"

# ports
"service.imap.port" = 1143
"""


@pytest.fixture
def path(tmp_path):
    return tmp_path / "config" / "msg.toml"


def fresh(path) -> ConfigStore:
    return ConfigStore(path)


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


# -- round trips -------------------------------------------------------------------
def test_missing_file_has_no_overrides(path):
    assert fresh(path).overrides() == {}
    assert not path.exists()


def test_set_then_read_back(path):
    ConfigStore(path).update({"local.autorestart": "yes", "service.imap.port": "1143", "local.defdomain": ""})
    s = fresh(path)
    assert s.overrides() == {"local.autorestart": "yes", "service.imap.port": "1143", "local.defdomain": ""}
    assert s.get_bool("local.autorestart") is True
    assert s.get_int("service.imap.port") == 1143
    assert tomllib.loads(path.read_text()) == {
        "local.autorestart": "yes", "service.imap.port": 1143, "local.defdomain": ""}


def test_full_dotted_names_are_quoted_keys(path):
    ConfigStore(path).update({"local.autorestart": "yes", "local.autorestart.timeout": "900"})
    assert path.read_text() == '"local.autorestart" = "yes"\n"local.autorestart.timeout" = "900"\n'


def test_integers_and_ports_are_toml_integers(path):
    ConfigStore(path).update({"service.pop.port": " 1110", "local.probe.history.days": "7"})
    assert tomllib.loads(path.read_text()) == {"service.pop.port": 1110, "local.probe.history.days": 7}


def test_delete(path):
    s = ConfigStore(path)
    s.update({"local.autorestart": "yes", "local.defdomain": "a.org"})
    s.update(deletes=["local.autorestart", "local.not.there"])
    assert fresh(path).overrides() == {"local.defdomain": "a.org"}


def test_typed_getters_fall_back_to_defaults(path):
    s = ConfigStore(path)
    assert s.get_bool("local.watcher.enable") is True
    assert s.get_int("local.watcher.port") == 49994
    assert s.get_float("local.autorestart.timeout") == 600.0
    assert s.get_str("alarm.msgalarmnoticehost") == "127.0.0.1"
    assert s.effective_text("local.probe.imap.timeout") is None


def test_bad_stored_value_falls_back_to_the_default(path):
    path.parent.mkdir()
    path.write_text('"local.watcher.port" = "lots"\n"local.autorestart" = ""\n')
    s = ConfigStore(path)
    assert s.get_int("local.watcher.port") == 49994
    assert s.get_bool("local.autorestart") is False


def test_hand_written_toml_types_read_as_text(path):
    path.parent.mkdir()
    path.write_text('"local.autorestart" = true\n"local.autorestart.timeout" = 900\n"service.readtimeout" = 2.5\n')
    assert ConfigStore(path).overrides() == {
        "local.autorestart": "yes", "local.autorestart.timeout": "900", "service.readtimeout": "2.5"}


# -- hand-written layout ---------------------------------------------------------------
def test_comments_and_blank_lines_survive_set_and_delete(path):
    path.parent.mkdir()
    path.write_text(HAND_WRITTEN)
    s = ConfigStore(path)
    s.update({"local.autorestart": "yes", "local.queuedir": "/var/queue"})
    s.update(deletes=["local.defdomain"])
    assert path.read_text() == """\
# msg.toml -- written by hand

# restart policy
"local.autorestart" = "yes"   # off until the probes are tuned


# ports
"service.imap.port" = 1143
"local.queuedir" = "/var/queue"
"""


def test_hand_written_dotted_keys_and_tables_are_changed_in_place(path):
    path.parent.mkdir()
    path.write_text('local.defdomain = "a.org"  # dotted key\n\n[service]\nimap.port = 143\n"pop.port" = 110\n')
    s = ConfigStore(path)
    assert s.overrides() == {"local.defdomain": "a.org", "service.imap.port": "143", "service.pop.port": "110"}
    s.update({"local.defdomain": "b.org", "service.imap.port": "1143"}, deletes=["service.pop.port"])
    assert path.read_text() == 'local.defdomain = "b.org"  # dotted key\n\n[service]\nimap.port = 1143\n'
    s.update(deletes=["local.defdomain"])
    assert fresh(path).overrides() == {"service.imap.port": "1143"}


def test_duplicate_spellings_of_one_name_collapse_on_set(path):
    path.parent.mkdir()
    path.write_text('"local.defdomain" = "a.org"\n\n[local]\ndefdomain = "c.org"\n')
    s = ConfigStore(path)
    s.update({"local.defdomain": "b.org"})
    assert fresh(path).overrides() == {"local.defdomain": "b.org"}
    assert tomllib.loads(path.read_text()) == {"local.defdomain": "b.org", "local": {}}


# -- refusals, errors, permissions -----------------------------------------------------
def test_refused_change_writes_nothing(path):
    s = ConfigStore(path)
    s.update({"local.defdomain": "a.org"})
    before = path.read_bytes()

    def refuse(after):
        assert after == {"local.defdomain": "a.org", "local.autorestart": "yes"}
        raise ValueError("no")

    with pytest.raises(ValueError):
        s.update({"local.autorestart": "yes"}, validate=refuse)
    assert path.read_bytes() == before


def test_unparseable_file_is_one_line_store_error(path):
    path.parent.mkdir()
    path.write_text('"local.autorestart" = \n"x" = 1\n')
    with pytest.raises(StoreError) as e:
        ConfigStore(path).overrides()
    assert str(e.value) == f"unable to parse {path}: Unexpected character: '\\n' at line 1 col 22"


def test_non_utf8_file_is_a_store_error(path):
    path.parent.mkdir()
    path.write_bytes(b'"local.defdomain" = "\xff"\n')
    with pytest.raises(StoreError, match="not UTF-8 text$"):
        ConfigStore(path).overrides()


def test_unparseable_file_is_not_overwritten(path):
    path.parent.mkdir()
    path.write_text("this is not toml\n")
    with pytest.raises(StoreError):
        ConfigStore(path).update({"local.autorestart": "yes"})
    assert path.read_text() == "this is not toml\n"


def test_files_are_owner_only(path):
    old = os.umask(0)
    try:
        ConfigStore(path).update({"local.autorestart": "yes"})
    finally:
        os.umask(old)
    assert mode(path.parent) == 0o700
    for p in (path, store_mod.lock_path(path), cache_path(path)):
        assert mode(p) == 0o600, p


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid  # reaped: nobody has this pid until the kernel recycles it


def test_leftover_temp_files_of_killed_writers_are_removed(path):
    path.parent.mkdir()
    leftover = path.parent / f".msg.toml.{dead_pid()}.tmp"
    leftover.write_text('"local.autorestart" = "ye')
    cache_leftover = path.parent / f"..msg.toml.cache.{dead_pid()}.tmp"  # issue 11: these stayed for ever
    cache_leftover.write_text('{"text": ')
    other = path.parent / ".msg.toml.notes.tmp"  # not ours: kept
    other.write_text("x")
    reader = subprocess.Popen(["sleep", "30"])  # stands for a live reader rebuilding the cache
    live = path.parent / f"..msg.toml.cache.{reader.pid}.tmp"
    live.write_text("{")
    try:
        ConfigStore(path).update({"local.autorestart": "yes"})
    finally:
        reader.kill()
        reader.wait()
    assert not leftover.exists() and not cache_leftover.exists()
    assert other.exists() and live.exists()


def test_out_of_range_hand_written_value_falls_back_to_the_default(path):
    path.parent.mkdir()
    path.write_text('"service.pop.numprocesses" = 99999999999999999999\n"local.watcher.metricsport" = 70000\n')
    s = ConfigStore(path)
    assert (s.get_int("service.pop.numprocesses"), s.get_int("local.watcher.metricsport")) == (1, 0)


# -- a store kept as a symbolic link (issue 11) ---------------------------------------------
def test_symlinked_store_is_written_through_and_stays_a_link(path, tmp_path):
    target = tmp_path / "repo" / "msg.toml"
    target.parent.mkdir()
    target.write_text('# under version control\n"local.defdomain" = "a.org"\n')
    path.parent.mkdir()
    path.symlink_to(target)
    ConfigStore(path).update({"local.autorestart": "yes"})
    assert path.is_symlink() and os.readlink(path) == str(target)
    assert target.read_text() == '# under version control\n"local.defdomain" = "a.org"\n"local.autorestart" = "yes"\n'
    assert fresh(path).overrides() == {"local.defdomain": "a.org", "local.autorestart": "yes"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["msg.toml"]  # no temp left beside it


def test_relative_symlink_chain_is_followed_to_the_end(path, tmp_path):
    (tmp_path / "repo").mkdir()
    final = tmp_path / "repo" / "site.toml"
    final.write_text("")
    (tmp_path / "repo" / "current.toml").symlink_to("site.toml")
    path.parent.mkdir()
    path.symlink_to(os.path.join("..", "repo", "current.toml"))
    ConfigStore(path).update({"local.defdomain": "b.org"})
    assert path.is_symlink() and (tmp_path / "repo" / "current.toml").is_symlink()
    assert tomllib.loads(final.read_text()) == {"local.defdomain": "b.org"}


# -- write errors in the admin's words (issue 11) ---------------------------------------------
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0500 directory anyway")
def test_unwritable_directory_is_a_one_line_store_error(path):
    path.parent.mkdir()
    path.write_text('"local.defdomain" = "a.org"\n')
    path.parent.chmod(0o500)
    try:
        with pytest.raises(StoreError) as e:
            ConfigStore(path).update({"local.defdomain": "b.org"})
    finally:
        path.parent.chmod(0o700)
    assert str(e.value) == f"cannot write {path}: permission denied"


def test_overrides_come_from_a_current_cache_without_tomlkit(path):
    ConfigStore(path).update({"local.defdomain": "a.org"})
    code = ("import sys; from msgsrv.config.store import ConfigStore; "
            f"print(ConfigStore({str(path)!r}).overrides(), 'tomlkit' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "{'local.defdomain': 'a.org'} False\n", "")


# -- the derived cache -------------------------------------------------------------------
def test_cache_answers_after_a_write(path):
    ConfigStore(path).update({"local.defdomain": "a.org"})
    assert cached_get(path, "local.defdomain") == (True, "a.org")
    assert cached_get(path, "local.queuedir") == (True, None)


def test_cache_for_a_missing_store_answers_unset(path):
    assert cached_get(path, "local.defdomain") == (True, None)


def test_cache_is_written_by_a_read(path):
    path.parent.mkdir()
    path.write_text('"local.defdomain" = "a.org"\n')
    assert cached_get(path, "local.defdomain") == (False, None)
    ConfigStore(path).overrides()
    assert cached_get(path, "local.defdomain") == (True, "a.org")


def test_reading_does_not_rewrite_a_current_cache(path):
    ConfigStore(path).update({"local.defdomain": "a.org"})
    ino = os.stat(cache_path(path)).st_ino
    assert fresh(path).overrides() == {"local.defdomain": "a.org"}
    assert os.stat(cache_path(path)).st_ino == ino  # a rewrite would rename a new file in


def test_cache_misses_after_a_hand_edit_of_the_same_size_inode_and_mtime(path):
    # The worst case for a stat identity: a coarse-timestamp filesystem where an in-place edit
    # inside the same tick keeps mtime, size and inode. The cache compares contents instead.
    ConfigStore(path).update({"local.defdomain": "a.org"})
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.write(path.read_bytes().replace(b"a.org", b"b.org"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = os.stat(path)
    assert (st2.st_mtime_ns, st2.st_size, st2.st_ino) == (st.st_mtime_ns, st.st_size, st.st_ino)
    assert cached_get(path, "local.defdomain") == (False, None)
    assert fresh(path).get_text("local.defdomain") == "b.org"
    assert cached_get(path, "local.defdomain") == (True, "b.org")


def test_stale_cache_from_a_writer_killed_before_its_cache_write(path):
    s = ConfigStore(path)
    s.update({"local.defdomain": "a.org"})
    old_cache = cache_path(path).read_bytes()
    s.update({"local.defdomain": "b.org"})
    cache_path(path).write_bytes(old_cache)  # as if killed between the rename and the cache write
    assert cached_get(path, "local.defdomain") == (False, None)


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'{"text": 1}', b'{"values": {}}',
                                     b'{"text": "", "values": []}'])
def test_damaged_cache_is_ignored(path, content):
    path.parent.mkdir()
    path.write_text("")
    cache_path(path).write_bytes(content)
    assert cached_get(path, "local.defdomain") == (False, None)


def test_cache_holds_text_and_values(path):
    ConfigStore(path).update({"local.defdomain": "a.org"})
    data = json.loads(cache_path(path).read_text())
    assert data == {"text": path.read_text(), "values": {"local.defdomain": "a.org"}}


@pytest.mark.parametrize("state", ["no file", "cached"])
def test_reading_the_overrides_imports_no_tomlkit_when_there_is_nothing_to_parse(tmp_path, state):
    """The watcher no longer preloads tomlkit for the servers it forks: reading a store without a file
    (a fresh server root) or with a cache of the file's current text must not import it."""
    path = tmp_path / "msg.toml"
    if state == "cached":
        ConfigStore(path).update({"local.autorestart": "yes"})
        assert cache_path(path).exists()
    code = ("import sys; from pathlib import Path; from msgsrv.config.store import ConfigStore; "
            "print(ConfigStore(Path(sys.argv[1])).overrides(), 'tomlkit' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    expected = "{}" if state == "no file" else "{'local.autorestart': 'yes'}"
    assert r.stdout.strip() == f"{expected} False"
