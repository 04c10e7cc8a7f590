"""A config file that does not parse never disarms the watcher (configview.py)."""

from msgsrv.config.store import ConfigStore
from msgsrv.watcher.configview import ConfigView


def test_broken_file_keeps_the_last_good_configuration_and_says_so_once(tmp_path):
    path = tmp_path / "msg.toml"
    ConfigStore(path).update({"local.autorestart": "yes", "local.autorestart.timeout": "900"})
    said = []
    view = ConfigView(path, lambda line, broken: said.append((broken, line)))
    assert view.refresh().get_bool("local.autorestart") and view.good
    path.write_text(path.read_text() + "\nthis is [not toml\n")
    for _ in range(3):
        cfg = view.refresh()
        assert cfg.get_bool("local.autorestart") and cfg.get_float("local.autorestart.timeout") == 900
    assert len(said) == 1 and said[0][0] is True and "unable to parse" in said[0][1]
    assert said[0][1].endswith("keeping the last configuration that parsed")
    path.write_text('"local.autorestart" = "no"\n')
    assert view.refresh().get_bool("local.autorestart") is False
    assert [b for b, _ in said] == [True, False] and view.broken is None


def test_a_change_counts_at_once(tmp_path):
    path = tmp_path / "msg.toml"
    view = ConfigView(path)
    assert view.refresh().get_float("local.autorestart.timeout") == 600  # no file: defaults
    ConfigStore(path).update({"local.autorestart.timeout": "1200"})
    assert view.refresh().get_float("local.autorestart.timeout") == 1200


def test_a_new_watcher_with_a_broken_file_uses_the_saved_configuration(tmp_path):
    path = tmp_path / "msg.toml"
    path.write_text("[[[ broken\n")
    said = []
    view = ConfigView(path, lambda line, broken: said.append(line), seed={"local.watcher.port": "40001"})
    assert view.refresh().get_int("local.watcher.port") == 40001 and view.good and len(said) == 1
