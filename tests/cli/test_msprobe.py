"""msprobe as a command: exact output shapes and exit codes, piped (no TTY)."""

import json
import sys
from pathlib import Path

import pytest

from msgsrv.config.store import ConfigStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "probe"))
from probe_fakes import FakeServers, closed_port  # noqa: E402


@pytest.fixture
def fakes():
    with FakeServers() as fs:
        yield fs


def configure(root, **sets):
    ConfigStore(root.config_file).update({k: str(v) for k, v in sets.items()})


def test_all_healthy_exit_0_plain_lines(root, cli, fakes):
    configure(root, **{"service.imap.port": fakes.start("imap"), "service.smtp.port": fakes.start("smtp")})
    r = cli("msprobe", "imap", "smtp")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout.splitlines()
    assert [ln.split()[0] for ln in out] == ["imap", "smtp"]
    assert all(ln.split()[-1] == "OK" and ln.split()[2].endswith("s") for ln in out)
    assert "\x1b[" not in r.stdout  # no colour when piped


def test_down_service_exit_1_error_on_stderr(root, cli):
    configure(root, **{"service.pop.port": closed_port()})
    r = cli("msprobe", "pop")
    assert r.returncode == 1
    assert r.stdout.split()[-3:] == ["DOWN", "connection", "refused"]
    assert r.stderr.splitlines() == ["msprobe: Error: pop server is not responding: connection refused",
                                     "msprobe: Warning: local.autorestart is off; not restarting store imap pop http"]


def test_json_output(root, cli, fakes):
    configure(root, **{"local.ens.port": fakes.start("line")})
    r = cli("msprobe", "--json", "ens")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["healthy"] is True
    assert [(s["service"], s["status"]) for s in data["services"]] == [("ens", "OK")]
    assert data["restarts"] == [] and data["disks"] == []


def test_quiet_prints_nothing(root, cli):
    configure(root, **{"service.pop.port": closed_port()})
    r = cli("msprobe", "-q", "pop")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "")


def test_history_min_median_max_and_sparkline(root, cli, fakes):
    configure(root, **{"service.imap.port": fakes.start("imap")})
    for _ in range(3):
        assert cli("msprobe", "-q", "imap").returncode == 0
    r = cli("msprobe", "--history", "imap")
    assert r.returncode == 0
    (line,) = r.stdout.splitlines()
    words = line.split()
    assert words[0] == "imap" and words[1] == "n=3" and words[2] == "failed=0"
    assert [w.split("=")[0] for w in words[3:7]] == ["min", "median", "max", "last"]
    assert len(words[7]) == 3 and set(words[7]) <= set("▁▂▃▄▅▆▇█")
    data = json.loads(cli("msprobe", "--history", "--json").stdout)
    assert [h["series"] for h in data["history"]] == ["imap"] and data["history"][0]["count"] == 3


def test_history_of_unprobed_service_exit_1(root, cli):
    r = cli("msprobe", "--history", "pop")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "no history recorded\n")


@pytest.mark.parametrize("args", [["nosuch"], ["--bogus"]])
def test_usage_errors_exit_2_one_line_nothing_written(root, cli, args):
    r = cli("msprobe", *args)
    assert r.returncode == 2
    assert r.stderr.startswith("msprobe: ") and r.stderr.count("\n") == 1
    assert r.stdout == ""
    assert not root.default_log.exists() and not root.history_db.exists()


def test_help_mentions_every_option(cli):
    r = cli("msprobe", "--help")
    assert r.returncode == 0
    for opt in ("--json", "--quiet", "--history"):
        assert opt in r.stdout
