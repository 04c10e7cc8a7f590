"""Records, not preconditions: a write that fails is kept, reported once and retried (statefile.py)."""

import json
import os

from msgsrv.watcher import statefile


def test_a_failed_write_is_reported_once_and_written_when_possible(tmp_path):
    said = []
    rec = statefile.Recorder(said.append)
    target = tmp_path / "sub" / "imap.pid"  # the directory is missing: writes fail
    assert rec.write(target, json.dumps([{"pid": 1}])) is False
    assert rec.write(target, json.dumps([{"pid": 2}])) is False
    assert len(said) == 1 and said[0].startswith(f"unable to record {target}: ")
    assert said[0].endswith("; supervising from memory")
    target.parent.mkdir()
    assert rec.flush() is True
    assert json.loads(target.read_text()) == [{"pid": 2}]  # the newest record
    assert said[-1] == f"recorded {target} again" and len(said) == 2
    assert oct(target.stat().st_mode & 0o777) == "0o600"


def test_removal_is_a_record_too(tmp_path):
    rec = statefile.Recorder(lambda line: None)
    target = tmp_path / "pop.pid"
    target.write_text("[]")
    assert rec.write(target, None) and not target.exists()
    assert rec.write(target, None)  # already gone


def test_state_from_another_boot_has_no_budget(tmp_path):
    (tmp_path / statefile.STATE).write_text(json.dumps({"boot_id": "another boot", "budget": {"store": [1.0]},
                                                        "pending": [{"unit": "store"}], "components": {}}))
    data = statefile.read_state(tmp_path)
    assert "budget" not in data and "pending" not in data and data["components"] == {}


def test_the_run_record_names_a_live_watcher_only(tmp_path):
    me = statefile.own_pid_record()
    (tmp_path / statefile.RUN_RECORD).write_text(json.dumps({**me, "port": 4000}))
    assert statefile.live_watcher(tmp_path)["port"] == 4000
    (tmp_path / statefile.RUN_RECORD).write_text(json.dumps({**me, "start_ticks": me["start_ticks"] - 500}))
    assert statefile.live_watcher(tmp_path) is None  # a recycled pid
    assert os.getpid() == me["pid"]


def test_state_from_another_boot_keeps_only_what_a_reboot_keeps(tmp_path):
    comps = {"imap": {"wanted": True, "state": "FATAL", "reason": "gave up", "start_pending": True,
                      "last_exit": {"pid": 7, "status": -9}}}
    (tmp_path / statefile.STATE).write_text(json.dumps({"boot_id": "another boot", "restarts_total": {"store": 2},
                                                        "components": comps, "config": {"local.autorestart": "yes"}}))
    data = statefile.read_state(tmp_path)
    assert "restarts_total" not in data and data["config"] == {"local.autorestart": "yes"}
    assert data["components"] == {"imap": {"wanted": True, "state": "FATAL", "reason": "gave up"}}
    (tmp_path / statefile.STATE).write_text(json.dumps({"boot_id": statefile.boot_id(), "restarts_total": {"s": 1},
                                                        "components": comps}))
    assert statefile.read_state(tmp_path)["components"]["imap"]["last_exit"] == {"pid": 7, "status": -9}


def test_other_boot_only_when_both_boot_ids_are_known():
    assert statefile.other_boot("another boot")
    assert not statefile.other_boot(statefile.boot_id())
    assert not statefile.other_boot(None) and not statefile.other_boot("")  # a record that does not say


def test_a_state_in_the_watchers_own_shape_is_kept_whole_and_not_called_damaged():
    from msgsrv.watcher.statefile import sane_state

    good = {"boot_id": "b", "written": 1.5, "mono": 2.0, "budget": {"store": [1.0, 2.5]},
            "restarts_total": {"store": 2}, "pending": [{"unit": "store", "members": ["imap", "pop"],
                                                         "cause": "imap", "hung": ["imap"]}],
            "components": {"imap": {"wanted": True, "state": "FATAL", "reason": "x", "start_pending": False,
                                    "last_exit": {"pid": 5, "status": -9, "how": "killed by signal 9", "time": 3.0}},
                           "pop": {"wanted": False, "state": None, "reason": None, "last_exit": None,
                                   "start_pending": False}},
            "config": {"local.autorestart": "yes"}}
    assert sane_state(good) == good


def test_what_is_not_in_the_watchers_shape_is_left_out_and_the_state_called_damaged():
    from msgsrv.watcher.statefile import sane_state

    got = sane_state({"boot_id": 7, "budget": {"store": ["x"], "cert": [1.0]}, "restarts_total": {"a": True, "b": 1},
                      "pending": [5, {"unit": "store", "members": "imap"}, {"unit": "cert", "members": ["cert"]}],
                      "components": {"imap": 5, "pop": {"wanted": "yes", "last_exit": {"pid": "x"}, "reason": None}},
                      "config": {"a": 1}})
    assert got == {"budget": {"cert": [1.0]}, "restarts_total": {"b": 1},
                   "pending": [{"unit": "cert", "members": ["cert"]}], "components": {"pop": {"reason": None}},
                   "damaged": True}
