"""msgsrv/integrations/ocf/msgsrv: the Pacemaker resource agent, run as Pacemaker would run it.

Fast part: meta-data, validate-all and the HA hand-over (the watcher gives up, monitor says "not
running"). Integration part: ocf-tester (Debian package resource-agents) over a built-in suite.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from msgsrv import messages as M
from tests.conftest import command_path, free_ports
from tests.integration.conftest import INTEGRATIONS, need
from tests.watcher.conftest import wait_for

AGENT = INTEGRATIONS / "ocf" / "msgsrv"
BINDIR = str(Path(command_path("start-msg")).parent)
OCF_SUCCESS, OCF_ERR_GENERIC, OCF_ERR_UNIMPLEMENTED, OCF_ERR_INSTALLED, OCF_ERR_CONFIGURED, OCF_NOT_RUNNING = \
    0, 1, 3, 5, 6, 7

# Every port of the built-in suite, so that a real start never meets another test's servers.
PORTS = ("local.watcher.port", "local.watcher.httpport", "service.imap.port", "service.pop.port", "service.http.port", "service.smtp.port",
         "service.lmtp.port", "local.mmp.imapport", "local.mmp.popport", "local.ens.port",
         "local.job_controller.port", "local.store.port", "local.cert.port", "local.sched.port",
         "service.imap.sslport", "service.pop.sslport", "service.http.sslport", "service.smtp.sslport")


def agent(action: str, base: Path, timeout: float = 120, **params: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCF_")}
    env.update({"OCF_ROOT": "/usr/lib/ocf", "OCF_RESKEY_server_root": str(base), "OCF_RESKEY_bindir": BINDIR})
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    return subprocess.run([str(AGENT), action], capture_output=True, text=True, env=env, timeout=timeout)


def test_agent_is_executable_and_shipped_beside_the_package():
    assert os.access(AGENT, os.X_OK)
    assert AGENT.read_text().startswith("#!/bin/sh\n")


def test_meta_data_describes_the_server_root_bindir_and_probe(base):
    r = agent("meta-data", base)
    assert r.returncode == OCF_SUCCESS, r.stderr
    assert r.stdout.startswith('<?xml version="1.0"?>\n<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">')
    ra = ET.fromstring(r.stdout.split("\n", 2)[2])
    assert ra.tag == "resource-agent" and ra.get("name") == "msgsrv"
    params = {p.get("name"): p for p in ra.iter("parameter")}
    assert set(params) == {"server_root", "bindir", "probe"}
    assert params["server_root"].find("content").get("default") == "/var/lib/msgsrv"
    assert "MSGSRV_BASE" in params["server_root"].find("shortdesc").text
    assert params["probe"].find("content").get("type") == "boolean"
    actions = {a.get("name"): a for a in ra.iter("action")}
    assert {"start", "stop", "monitor", "validate-all", "meta-data"} <= set(actions)
    assert actions["monitor"].get("interval") == "30s"


def test_validate_all_names_what_is_wrong(base, tmp_path):
    assert agent("validate-all", base).returncode == OCF_SUCCESS
    r = agent("validate-all", base, bindir=str(tmp_path))
    assert r.returncode == OCF_ERR_INSTALLED
    assert f"unable to find start-msg in {tmp_path} (parameter bindir)" in r.stderr
    assert agent("validate-all", Path("relative/root")).returncode == OCF_ERR_CONFIGURED
    (tmp_path / "file").write_text("")
    assert agent("validate-all", tmp_path / "file").returncode == OCF_ERR_CONFIGURED
    assert agent("frobnicate", base).returncode == OCF_ERR_UNIMPLEMENTED


def test_stopped_resource_monitors_not_running_and_stops_cleanly(base):
    assert agent("monitor", base).returncode == OCF_NOT_RUNNING
    assert agent("stop", base).returncode == OCF_SUCCESS
    # a node without the software: not running there, and stop succeeds (Pacemaker probes every node)
    assert agent("monitor", base, bindir="/nonexistent").returncode == OCF_NOT_RUNNING
    assert agent("stop", base, bindir="/nonexistent").returncode == OCF_SUCCESS


def test_ha_watcher_giving_up_makes_monitor_fail_for_failover(suite, base):
    suite.configure()
    r = agent("start", base, probe="false")
    assert r.returncode == OCF_SUCCESS, r.stderr
    assert agent("monitor", base, probe="false").returncode == OCF_SUCCESS
    assert suite.cli("watcher", "status", "--json").returncode == 0
    watcher = suite.watcher_pid()
    for _ in range(2):
        pid = suite.pids("imap")[0]
        suite.kill(pid)
        wait_for(lambda pid=pid: (p := suite.pids("imap")) and p[0] != pid
                 and suite.status()["http"]["state"] == "RUNNING", timeout=15)
    suite.kill(suite.pids("imap")[0])  # SPEC §3: the third failure inside the window; in HA the watcher exits
    wait_for(lambda: not suite.pids("watcher"), timeout=20)
    wait_for(lambda: not psutil.pid_exists(watcher) or psutil.Process(watcher).status() == psutil.STATUS_ZOMBIE)
    assert M.HA_SHUTDOWN in suite.log_lines()
    assert agent("monitor", base, probe="false").returncode == OCF_NOT_RUNNING
    assert agent("stop", base).returncode == OCF_SUCCESS


def test_monitor_fails_on_a_component_the_watcher_will_not_restart_not_while_it_restarts(suite, base):
    suite.configure(args={"store": "--delay 3"})  # a restart of the store group takes a while
    assert agent("start", base, probe="false").returncode == OCF_SUCCESS
    suite.kill(suite.pids("imap")[0])
    wait_for(lambda: suite.status()["store"]["state"] in ("STARTING", "BACKOFF"))
    assert suite.cli("watcher", "status").returncode == 3
    assert agent("monitor", base, probe="false").returncode == OCF_SUCCESS  # the watcher at work
    wait_for(lambda: all(suite.status()[c]["state"] == "RUNNING" for c in ("store", "imap", "pop", "http")),
             timeout=20)
    assert suite.cli("configutil", "-o", "local.autorestart", "-v", "no").returncode == 0
    suite.kill(suite.pids("imap")[0])
    wait_for(lambda: suite.status()["imap"]["state"] == "EXITED")
    r = agent("monitor", base, probe="false")
    assert r.returncode == OCF_ERR_GENERIC and "EXITED" in r.stderr
    assert agent("stop", base).returncode == OCF_SUCCESS


@pytest.mark.integration
@pytest.mark.timeout(300)  # ocf-tester starts and stops the suite a dozen times
def test_ocf_tester_passes_on_the_built_in_suite(root, base, cli):
    tester = need("ocf-tester", "resource-agents")
    need("xmllint", "libxml2-utils")
    settings = dict(zip(PORTS, map(str, free_ports(len(PORTS)))))
    # ocf-tester starts and stops the suite a dozen times: the store group and the MTA (what a
    # cluster fails over for); ens, cert and imsched start and stop as these do
    settings.update({"local.schedule.msprobe.enable": "no", "local.autorestart": "yes", "local.cert.enable": "no",
                     "local.sched.enable": "no", "local.ens.enable": "no"})
    f = base / "ports.txt"
    f.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    assert cli("configutil", "-i", str(f)).returncode == 0
    try:
        r = subprocess.run([tester, "-v", "-n", "mail", "-o", f"server_root={base}", "-o", f"bindir={BINDIR}",
                            str(AGENT)], capture_output=True, text=True, timeout=150,
                           env={**os.environ, "OCF_ROOT": "/usr/lib/ocf"})
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
        assert f"{AGENT} passed all tests" in r.stdout
    finally:
        cli("stop-msg", "-f")
