"""configutil as users and scripts run it: the real console script in a temporary MSGSRV_BASE.

Every test asserts the exact stdout, stderr and exit code (STYLE §4 rule 11).
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from msgsrv.config import catalogue
from msgsrv.config.store import cache_path, cached_get
from tests.conftest import command_path

DEFAULT_SCHEDULE = "5,15,25,35,45,55 * * * * lib/msprobe"
HAND_WRITTEN = """\
# msg.toml, kept by hand

# restart policy
"local.autorestart" = "no"   # until the probes are tuned

"local.defdomain" = "example.org"
"""


def ok(result, stdout: str = "") -> None:
    assert (result.returncode, result.stdout, result.stderr) == (0, stdout, "")


@pytest.fixture
def store(base) -> Path:
    return base / "config" / "msg.toml"


@pytest.fixture
def hand_written(store) -> Path:
    store.parent.mkdir(parents=True)
    store.write_text(HAND_WRITTEN)
    return store


# -- get and set -------------------------------------------------------------------
def test_the_users_line(cli):
    ok(cli("configutil", "-o", "local.autorestart", "-v", "yes"))
    ok(cli("configutil", "-o", "local.autorestart"), "yes\n")


def test_unset_parameter_prints_nothing(cli, store):
    ok(cli("configutil", "-o", "local.defdomain"))  # no store at all
    ok(cli("configutil", "-o", "local.autorestart", "-v", "yes"))
    ok(cli("configutil", "-o", "local.defdomain"))  # a store without it
    ok(cli("configutil", "-o", "local.probe.imap.timeout"))  # a pattern entry


def test_defaults_with_H(cli):
    ok(cli("configutil", "-H", "-o", "local.autorestart.timeout"), "600\n")
    ok(cli("configutil", "-H", "-o", "local.schedule.msprobe"), DEFAULT_SCHEDULE + "\n")
    ok(cli("configutil", "-o", "local.autorestart.timeout", "-v", "900"))
    ok(cli("configutil", "-H", "-o", "local.autorestart.timeout"), "600\n")  # still the default


def test_empty_value_is_stored(cli, store):
    ok(cli("configutil", "-o", "local.defdomain", "-v", ""))
    ok(cli("configutil", "-o", "local.defdomain"), "\n")
    ok(cli("configutil"), 'local.defdomain = ""\n')
    assert tomllib.loads(store.read_text()) == {"local.defdomain": ""}


def test_delete_returns_to_the_default(cli, store):
    ok(cli("configutil", "-o", "local.autorestart", "-v", "yes"))
    ok(cli("configutil", "-o", "local.defdomain", "-v", "example.org"))
    ok(cli("configutil", "-d", "-o", "local.autorestart"))
    ok(cli("configutil", "-o", "local.autorestart"))
    ok(cli("configutil"), "local.defdomain = example.org\n")
    before = store.read_bytes()
    ok(cli("configutil", "-o", "local.autorestart", "-d"))  # not set: nothing to do, nothing written
    assert store.read_bytes() == before


def test_values_with_spaces_and_schedules(cli):
    ok(cli("configutil", "-o", "local.schedule.backup", "-v", "0 3 * * * lib/backup --all"))
    ok(cli("configutil", "-o", "local.schedule.backup"), "0 3 * * * lib/backup --all\n")
    ok(cli("configutil", "-o", "local.schedule.msprobe", "-v", "30 lib/msprobe"))
    ok(cli("configutil", "-o", "local.autorestart.timeout", "-v", "30"))
    ok(cli("configutil", "-o", "local.autorestart.timeout"), "30\n")


def test_other_store_file_with_f(cli, store, tmp_path):
    other = tmp_path / "elsewhere" / "site.toml"
    ok(cli("configutil", "-f", str(other), "-o", "local.defdomain", "-v", "other.org"))
    ok(cli("configutil", "-f", str(other), "-o", "local.defdomain"), "other.org\n")
    ok(cli("configutil", "-o", "local.defdomain", "-f", str(other)), "other.org\n")
    ok(cli("configutil", "-f", str(other)), "local.defdomain = other.org\n")
    ok(cli("configutil", "-o", "local.defdomain"))
    assert not store.exists()


def test_get_json(cli):
    ok(cli("configutil", "-o", "service.imap.port", "-v", "1143"))
    ok(cli("configutil", "-o", "service.imap.port", "--json"), '{"name": "service.imap.port", "value": "1143"}\n')
    ok(cli("configutil", "-o", "local.defdomain", "--json"), '{"name": "local.defdomain", "value": null}\n')


# -- listing -----------------------------------------------------------------------
@pytest.fixture
def listed(cli, tmp_path):
    f = tmp_path / "listed.txt"
    f.write_text('service.imap.port=1143\nlocal.defdomain=""\nlocal.queuedir=/var/my queue\nlocal.autorestart=yes\n'
                 "service.pop.port=1110\nlocal.schedule.msprobe=*/5 * * * * lib/msprobe\n")
    ok(cli("configutil", "-i", str(f)))


def test_list_sorted_and_quoted(cli, listed):
    ok(cli("configutil"), (
        "local.autorestart = yes\n"
        'local.defdomain = ""\n'
        'local.queuedir = "/var/my queue"\n'
        'local.schedule.msprobe = "*/5 * * * * lib/msprobe"\n'
        "service.imap.port = 1143\n"
        "service.pop.port = 1110\n"))


def test_list_by_prefix_and_glob(cli, listed):
    ok(cli("configutil", "-p", "service."), "service.imap.port = 1143\nservice.pop.port = 1110\n")
    ok(cli("configutil", "-p", "local.auto"), "local.autorestart = yes\n")
    ok(cli("configutil", "-p", "*.port"), "service.imap.port = 1143\nservice.pop.port = 1110\n")
    ok(cli("configutil", "-p", "local.?ueuedir"), 'local.queuedir = "/var/my queue"\n')
    ok(cli("configutil", "-p", "nothing.matches"))


def test_list_with_refreshability(cli, listed):
    ok(cli("configutil", "-m", "-p", "local.a"), "local.autorestart = yes [REFRESHABLE]\n")
    ok(cli("configutil", "-p", "service", "-m"),
       "service.imap.port = 1143 [NOT REFRESHABLE]\nservice.pop.port = 1110 [NOT REFRESHABLE]\n")


def test_list_json(cli, listed):
    r = cli("configutil", "--json", "-p", "service.imap")
    assert (r.returncode, r.stderr) == (0, "")
    assert json.loads(r.stdout) == [
        {"name": "service.imap.port", "value": "1143", "type": "port", "refreshable": False}]


def test_H_alone_lists_the_whole_catalogue(cli, listed):
    r = cli("configutil", "-H")
    assert (r.returncode, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    assert len(lines) == len(catalogue.PARAMETERS)
    assert lines == sorted(lines)
    assert "local.autorestart = no" in lines  # the default, not the stored yes
    assert "local.autorestart.timeout = 600" in lines
    assert f'local.schedule.msprobe = "{DEFAULT_SCHEDULE}"' in lines
    assert 'local.probe.<svc>.timeout = ""' in lines


def test_H_with_prefix_and_marks(cli):
    ok(cli("configutil", "-H", "-m", "-p", "local.watcher"), (
        "local.watcher.enable = yes [NOT REFRESHABLE]\n"
        "local.watcher.httpaddr = 127.0.0.1 [NOT REFRESHABLE]\n"
        "local.watcher.httpport = 49995 [NOT REFRESHABLE]\n"
        "local.watcher.metricsport = 0 [NOT REFRESHABLE]\n"
        "local.watcher.port = 49994 [NOT REFRESHABLE]\n"))


# -- import ------------------------------------------------------------------------
def test_import(cli, tmp_path):
    f = tmp_path / "settings.txt"
    f.write_text("# site settings\n\nlocal.defdomain=example.org\n  service.pop.port = 1110\n"
                 'local.queuedir = "/var/my queue"\nlocal.autorestart=on\n')
    ok(cli("configutil", "-i", str(f)))
    ok(cli("configutil"), ("local.autorestart = on\nlocal.defdomain = example.org\n"
                           'local.queuedir = "/var/my queue"\nservice.pop.port = 1110\n'))


def test_import_checks_the_cross_field_rule_on_the_result(cli, tmp_path):
    f = tmp_path / "settings.txt"
    f.write_text("local.schedule.msprobe = 0 * * * * lib/msprobe\nlocal.autorestart.timeout = 3600\n")
    ok(cli("configutil", "-i", str(f)))
    ok(cli("configutil", "-o", "local.autorestart.timeout"), "3600\n")


# -- the bad-input table -----------------------------------------------------------------
BOOLEAN = "expected a boolean (yes/no, on/off, 1/0)"
NOT_A_SCHEDULE = "expected 5 crontab fields and a command (min hour dom month dow command), or seconds and a command"
BAD_INPUT = [
    (["-o", "local.defdomian", "-v", "x.org"],
     "unknown parameter 'local.defdomian' (did you mean 'local.defdomain'?)"),
    (["-o", "local.defdomian"], "unknown parameter 'local.defdomian' (did you mean 'local.defdomain'?)"),
    (["-d", "-o", "service.imap.prot"], "unknown parameter 'service.imap.prot' (did you mean 'service.imap.port'?)"),
    (["-o", "local.autorestart", "-v", "maybe"], f"invalid value 'maybe' for local.autorestart: {BOOLEAN}"),
    (["-o", "local.probe.history.days", "-v", "many"],
     "invalid value 'many' for local.probe.history.days: expected an integer"),
    (["-o", "local.autorestart.timeout", "-v", "10m"],
     "invalid value '10m' for local.autorestart.timeout: expected a number of seconds"),
    (["-o", "service.imap.port", "-v", "70000"],
     "invalid value '70000' for service.imap.port: port 70000 is out of range (1-65535)"),
    (["-o", "service.pop.port", "-v", "0"],
     "invalid value '0' for service.pop.port: port 0 is out of range (1-65535)"),
    (["-o", "local.schedule.msprobe", "-v", "every ten minutes"],
     f"invalid value 'every ten minutes' for local.schedule.msprobe: {NOT_A_SCHEDULE}"),
    (["-o", "local.schedule.msprobe", "-v", "*/10 * * * *"],
     f"invalid value '*/10 * * * *' for local.schedule.msprobe: {NOT_A_SCHEDULE}"),
    (["-o", "local.schedule.msprobe", "-v", "5 * * * *"],
     f"invalid value '5 * * * *' for local.schedule.msprobe: {NOT_A_SCHEDULE}"),
    (["-o", "local.schedule.backup", "-v", "61 * * * * lib/backup"],
     "invalid value '61 * * * * lib/backup' for local.schedule.backup: invalid crontab fields '61 * * * *'"),
    (["-o", "local.autorestart.timeout", "-v", "300"],
     "local.autorestart.timeout (300 s) must be at least the longest gap between two msprobe runs "
     f'(600 s from local.schedule.msprobe = "{DEFAULT_SCHEDULE}")'),
    (["-o", "local.schedule.msprobe", "-v", "0 * * * * lib/msprobe"],
     "local.autorestart.timeout (600 s) must be at least the longest gap between two msprobe runs "
     '(3600 s from local.schedule.msprobe = "0 * * * * lib/msprobe")'),
    (["-x"], "No such option '-x'."),
    (["--jsn"], "No such option '--jsn'. Did you mean '--json'?"),
    (["extra"], "Got unexpected extra argument (extra)"),
    (["-o"], "Option '-o' requires an argument."),
    (["-v", "yes"], "-v needs -o NAME"),
    (["-d"], "-d needs -o NAME"),
    (["-o", "local.autorestart", "-v", "yes", "-d"], "-v and -d cannot be used together"),
    (["-i", "{import}"], f"{{import}}:4: invalid value 'perhaps' for local.autorestart: {BOOLEAN}"),
    (["-i", "{missing}"], "unable to read {missing}: No such file or directory"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT,
                         ids=[" ".join(c.values[0] if hasattr(c, "values") else c[0]) for c in BAD_INPUT])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(cli, hand_written, tmp_path, args, message):
    imp = tmp_path / "import.txt"  # good lines first: -i is all or nothing
    imp.write_text("local.defdomain=other.org\n\nservice.imap.port = 1143\nlocal.autorestart = perhaps\n")
    paths = {"import": str(imp), "missing": str(tmp_path / "missing.txt")}
    args = [a.format(**paths) for a in args]
    r = cli("configutil", *args)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"configutil: {message.format(**paths)}\n")
    assert hand_written.read_text() == HAND_WRITTEN  # byte for byte
    # nothing else either, bar the lock and the cache derived from the unchanged store
    assert {p.name for p in hand_written.parent.iterdir()} <= {"msg.toml", "msg.toml.lock", ".msg.toml.cache"}


# -- -V and broken stores ------------------------------------------------------------------
def test_V_on_a_good_store(cli, hand_written):
    ok(cli("configutil", "-V"))


def test_V_reports_each_bad_parameter(cli, store):
    store.parent.mkdir(parents=True)
    store.write_text('# broken by hand\n"local.autorestart" = "maybe"\n"service.imap.port" = 70000\n'
                     '"bogus.name" = "x"\n"local.defdomain" = "example.org"\n"local.autorestart.timeout" = 60\n')
    r = cli("configutil", "-V")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (
        "configutil: unknown parameter 'bogus.name'\n"
        f"configutil: invalid value 'maybe' for local.autorestart: {BOOLEAN}\n"
        "configutil: invalid value '70000' for service.imap.port: port 70000 is out of range (1-65535)\n"
        "configutil: local.autorestart.timeout (60 s) must be at least the longest gap between two msprobe runs "
        f'(600 s from local.schedule.msprobe = "{DEFAULT_SCHEDULE}")\n')


@pytest.mark.parametrize("args", [["-o", "local.autorestart"], [], ["-V"], ["-o", "local.defdomain", "-v", "x.org"],
                                  ["-p", "local"]])
def test_unparseable_store_is_one_line_exit_1(cli, store, args):
    store.parent.mkdir(parents=True)
    store.write_text('"local.autorestart" = \n')
    r = cli("configutil", *args)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"configutil: unable to parse {store}: Unexpected character: '\\n' at line 1 col 22\n"
    assert store.read_text() == '"local.autorestart" = \n'


def test_unknown_name_already_in_the_store_can_be_read_and_deleted(cli, store):
    store.parent.mkdir(parents=True)
    store.write_text('"local.oldsetting" = "x"\n')
    ok(cli("configutil", "-o", "local.oldsetting"), "x\n")
    ok(cli("configutil", "-m"), "local.oldsetting = x [NOT REFRESHABLE]\n")
    ok(cli("configutil", "-d", "-o", "local.oldsetting"))
    ok(cli("configutil"))


# -- files ---------------------------------------------------------------------------
def test_comments_and_blank_lines_survive_set_and_delete(cli, hand_written):
    ok(cli("configutil", "-o", "local.autorestart", "-v", "yes"))
    ok(cli("configutil", "-o", "service.imap.port", "-v", "1143"))
    ok(cli("configutil", "-d", "-o", "local.defdomain"))
    assert hand_written.read_text() == """\
# msg.toml, kept by hand

# restart policy
"local.autorestart" = "yes"   # until the probes are tuned

"service.imap.port" = 1143
"""


def test_files_are_0600_and_dirs_0700_even_under_umask_0(base, store):
    subprocess.run([command_path("configutil"), "-o", "local.autorestart", "-v", "yes"], check=True,
                   preexec_fn=lambda: os.umask(0))
    subprocess.run([command_path("configutil"), "-o", "local.autorestart"], check=True, capture_output=True,
                   preexec_fn=lambda: os.umask(0))
    dirs = [base] + [p for p in base.rglob("*") if p.is_dir()]
    files = [p for p in base.rglob("*") if p.is_file()]
    assert {p.relative_to(base).as_posix() for p in files} == {
        "config/msg.toml", "config/msg.toml.lock", "config/.msg.toml.cache"}
    assert {p.relative_to(base).as_posix() for p in dirs} >= {
        ".", "config", "data", "data/log", "data/run", "data/store", "data/queue"}
    for p in dirs:
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


# -- the fast path and its cache -----------------------------------------------------------
def test_fast_path_sees_a_hand_edit_of_the_same_size(cli, store):
    ok(cli("configutil", "-o", "local.defdomain", "-v", "aaa.org"))
    ok(cli("configutil", "-o", "local.defdomain"), "aaa.org\n")
    assert cached_get(store, "local.defdomain") == (True, "aaa.org")  # the cache is current
    st = store.stat()
    with open(store, "r+b") as f:  # an in-place edit: same inode, same size
        f.write(store.read_bytes().replace(b"aaa.org", b"bbb.org"))
    os.utime(store, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime
    assert (store.stat().st_ino, store.stat().st_size, store.stat().st_mtime_ns) == \
        (st.st_ino, st.st_size, st.st_mtime_ns)
    ok(cli("configutil", "-o", "local.defdomain"), "bbb.org\n")
    ok(cli("configutil", "-o", "local.defdomain"), "bbb.org\n")


def test_fast_path_sees_a_hand_edit_by_rename(cli, store):
    ok(cli("configutil", "-o", "local.defdomain", "-v", "a.org"))
    ok(cli("configutil", "-o", "local.defdomain"), "a.org\n")
    tmp = store.with_name("edit.tmp")
    tmp.write_text('"local.defdomain" = "b.org"\n')
    tmp.replace(store)
    ok(cli("configutil", "-o", "local.defdomain"), "b.org\n")
    store.unlink()
    ok(cli("configutil", "-o", "local.defdomain"))


def test_fast_path_without_a_cache_parses(cli, store):
    ok(cli("configutil", "-o", "local.defdomain", "-v", "a.org"))
    cache_path(store).unlink()
    ok(cli("configutil", "-o", "local.defdomain"), "a.org\n")
    assert cache_path(store).exists()  # rebuilt by the parse


def test_fast_path_does_not_import_click_or_toml(base, store):
    subprocess.run([command_path("configutil"), "-o", "local.defdomain", "-v", "a.org"], check=True)
    code = ("import sys; from msgsrv.cli.configutil import main; rc = main(['-o', 'local.defdomain']); "
            "heavy = sorted(m for m in ('click', 'rich', 'tomlkit', 'tomllib', 'croniter') if m in sys.modules); "
            "print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "a.org\n[]\n", "")


def test_help_is_plain_click_help_without_rich_or_asyncio(base):
    code = ("import sys, io, contextlib; from msgsrv.cli.configutil import main; out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out): rc = main(['-h'])\n"
            "print(rc, out.getvalue().splitlines()[0], "
            "sorted(m for m in ('rich', 'asyncio', 'tomlkit', 'croniter') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "0 Usage: configutil [OPTIONS] []\n", "")


# -- concurrency and crashes ---------------------------------------------------------------
def test_50_concurrent_writers_lose_nothing(cli, store, base):
    ok(cli("configutil", "-o", "local.defdomain", "-v", "example.org"))
    procs = [subprocess.Popen([command_path("configutil"), "-o", f"local.schedule.t{n}", "-v", f"{n} lib/task{n}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(1, 51)]
    results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert results == [(0, "", "")] * 50
    data = tomllib.loads(store.read_text())
    assert data == {"local.defdomain": "example.org", **{f"local.schedule.t{n}": f"{n} lib/task{n}"
                                                         for n in range(1, 51)}}
    r = cli("configutil", "-p", "local.schedule.t")
    assert (r.returncode, r.stderr, len(r.stdout.splitlines())) == (0, "", 50)
    ok(cli("configutil", "-o", "local.schedule.t37"), "37 lib/task37\n")
    assert [p.name for p in store.parent.iterdir() if p.name.endswith(".tmp")] == []


WRITER = """\
import sys
import msgsrv.cli.configutil_cmd, tomlkit  # imported before "ready": the kills land in writes
from msgsrv.cli.configutil import main
print("ready", flush=True)
i = 0
while True:
    i += 1
    if i % 7 == 0:
        args = ["-d", "-o", "local.defdomain"]
    else:  # values of varying length, so that sizes change too
        args = ["-o", "local.defdomain", "-v", "d%d.example.org" % (i * 7919 % 100003)]
    if main(args) != 0:
        sys.exit(3)
    print(i, flush=True)
"""


def test_writer_killed_at_random_moments_never_breaks_the_store(cli, base, store):
    """200+ writes by a writer that is SIGKILLed at random moments: after each kill the store parses,
    the cache is current or ignored, and `configutil -o` prints exactly what tomllib reads."""
    ok(cli("configutil", "-o", "local.autorestart", "-v", "yes"))
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    writes = kills = 0
    while writes < 200 and kills < 300:
        w = subprocess.Popen([sys.executable, "-c", WRITER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        assert w.stdout.readline() == "ready\n"
        # ~2 ms a write on an idle machine, several times that under load: a kill every few writes
        time.sleep(rng.uniform(0.0, 0.03 if kills < 20 or writes > 10 * kills else 0.08))
        w.send_signal(signal.SIGKILL)
        out, err = w.communicate(timeout=30)
        assert w.returncode == -signal.SIGKILL, (seed, err)
        writes += len(out.splitlines())
        kills += 1
        data = tomllib.loads(store.read_text())  # raises if the store was left broken
        expected = data.get("local.defdomain")
        assert data["local.autorestart"] == "yes", seed
        hit, cached = cached_get(store, "local.defdomain")  # the cache exactly as the kill left it
        assert not hit or cached == expected, (seed, kills, cached, expected)
        ok(cli("configutil", "-o", "local.defdomain"), "" if expected is None else expected + "\n")
        assert cached_get(store, "local.defdomain") == (True, expected), seed
    assert writes >= 200, (seed, writes, kills)
    ok(cli("configutil", "-o", "local.defdomain", "-v", "final.example.org"))
    ok(cli("configutil", "-o", "local.defdomain"), "final.example.org\n")
    assert [p.name for p in store.parent.iterdir() if p.name.startswith(".msg.toml.") and
            p.name.endswith(".tmp")] == []
