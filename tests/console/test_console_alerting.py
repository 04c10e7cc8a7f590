"""The shipped Prometheus alerting rules and Grafana dashboard (msgsrv/integrations/prometheus, grafana).

promtool (Debian package prometheus, installed by scripts/ci-deps.sh) checks the rules and runs
their unit tests (tests/console/promtool/msgsrv-alerts.test.yml); every metric a rule or a panel
names is one the watcher exports (msgsrv/watcher/metrics.py); the dashboard's queries parse.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from msgsrv.watcher.metrics import Sample, Snapshot, families
from tests.integration.conftest import INTEGRATIONS, need

RULES = INTEGRATIONS / "prometheus" / "msgsrv-alerts.yml"
RULE_TESTS = Path(__file__).resolve().parent / "promtool" / "msgsrv-alerts.test.yml"
DASHBOARD = INTEGRATIONS / "grafana" / "msgsrv-dashboard.json"
ALERTS = {"MsgsrvWatcherDown", "MsgsrvUnitFatal", "MsgsrvComponentDown", "MsgsrvComponentFrozen",
          "MsgsrvRestartBudgetSpent",
          "MsgsrvResponseSlow", "MsgsrvProbeFailed", "MsgsrvProbeStale", "MsgsrvDiskLow"}


def exported_names() -> set[str]:
    """Every sample name the watcher can export, from the renderer itself."""
    snap = Snapshot([{"name": "imap", "daemon": "imapd", "state": "RUNNING", "pids": [1], "uptime": 1.0,
                      "restarts": 0, "unit": "store"}], {"store": 1}, 2, 600.0, False,
                    {"imap": Sample(0.1, True, 1.0), "disk:store": Sample(50.0, True, 1.0)})
    return {s.name for fam in families(snap) for s in fam.samples}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bmsgsrv_[a-z_]+\b", expr))


def rules() -> list[dict]:
    """alert, expr, severity and annotation keys of each rule (the file keeps one expr per line;
    promtool below parses it for real)."""
    out = []
    for block in re.split(r"\n\s*- alert: ", RULES.read_text())[1:]:
        out.append({"alert": block.split("\n", 1)[0].strip(),
                    "expr": re.search(r"^\s*expr: (.+)$", block, re.M).group(1),
                    "severity": re.search(r"^\s*severity: (\w+)$", block, re.M).group(1),
                    "annotations": set(re.findall(r"^\s*(summary|description):", block, re.M))})
    return out


def test_rules_cover_the_failures_of_the_issue():
    assert {r["alert"] for r in rules()} == ALERTS
    for r in rules():
        assert r["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"] == {"summary", "description"}, r["alert"]


def test_rules_name_only_metrics_the_watcher_exports():
    names = exported_names()
    for r in rules():
        assert metric_names(r["expr"]) <= names, (r["alert"], metric_names(r["expr"]) - names)


@pytest.mark.integration  # promtool, from Debian's prometheus package
def test_promtool_check_rules():
    promtool = need("promtool", "prometheus")
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in r.stdout


@pytest.mark.integration  # promtool, from Debian's prometheus package
def test_promtool_test_rules():
    promtool = need("promtool", "prometheus")
    r = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.mark.integration  # promtool, from Debian's prometheus package
def test_the_rule_tests_fail_when_a_threshold_moves(tmp_path):
    """The unit tests bite: with the disk threshold at 9 % the 9.5 % sample no longer alerts."""
    promtool = need("promtool", "prometheus")
    rules_dir = tmp_path / "msgsrv" / "integrations" / "prometheus"
    rules_dir.mkdir(parents=True)
    text = RULES.read_text()
    assert "(msgsrv_disk_free_percent) < 10" in text
    (rules_dir / RULES.name).write_text(text.replace("(msgsrv_disk_free_percent) < 10", "(msgsrv_disk_free_percent) < 9"))
    tests_dir = tmp_path / "tests" / "console" / "promtool"
    tests_dir.mkdir(parents=True)
    shutil.copy(RULE_TESTS, tests_dir / RULE_TESTS.name)
    r = subprocess.run([promtool, "test", "rules", str(tests_dir / RULE_TESTS.name)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "MsgsrvDiskLow" in r.stdout + r.stderr


# -- the Grafana dashboard ------------------------------------------------------------------------------
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_dashboard_is_importable_json_with_a_datasource_choice():
    d = dashboard()
    assert d["uid"] == "msgsrv-watcher" and d["title"] and d["schemaVersion"] >= 30
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "msgsrv_" in variables["instance"]["definition"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert p["datasource"]["uid"] == "${datasource}" and p["gridPos"]["w"] <= 24, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}" and 'instance=~"$instance"' in t["expr"], p["title"]


def test_dashboard_shows_what_the_alerts_watch():
    used = set().union(*(metric_names(e) for e in exprs()))
    assert used <= exported_names(), used - exported_names()
    assert {"msgsrv_component_up", "msgsrv_component_fatal", "msgsrv_restarts_in_window", "msgsrv_restart_limit",
            "msgsrv_probe_response_seconds", "msgsrv_probe_healthy", "msgsrv_disk_free_percent"} <= used


@pytest.mark.integration  # promtool, from Debian's prometheus package
def test_dashboard_queries_parse(tmp_path):
    """promtool has no `check expr`: each query, with the dashboard's variables filled in, becomes a
    recording rule that `promtool check rules` parses."""
    promtool = need("promtool", "prometheus")
    rules_file = tmp_path / "dashboard-queries.yml"
    group = [{"record": f"msgsrv:dashboard_query:{i}", "expr": e.replace("$instance", ".*")}
             for i, e in enumerate(exprs())]
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": group}]}))  # JSON is YAML
    r = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", [RULES, DASHBOARD])
def test_shipped_inside_the_package(path):
    assert path.is_file() and INTEGRATIONS in path.parents
