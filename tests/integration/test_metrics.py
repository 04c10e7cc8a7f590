"""msgsrv/watcher/metrics.py: the watcher's Prometheus endpoint, scraped for real and parsed.

Fast part: a watcher supervising stand-in servers on free ports, scraped over HTTP on 127.0.0.1 and
parsed with prometheus_client.parser (which raises on malformed exposition text); the pure renderer
with plain values. Integration part: a real Prometheus (Debian package) scrapes the watcher once.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families  # a msgsrv dependency: imported, never skipped

from msgsrv import messages as M
from msgsrv.probe.history import History
from msgsrv.watcher.metrics import LISTEN_FAILED, Sample, Snapshot, families, last_samples, render
from tests.conftest import free_port, free_ports
from tests.integration.conftest import need
from tests.watcher.conftest import STORE, wait_for


# -- helpers ----------------------------------------------------------------------------------
def scrape(port: int) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.headers["Content-Type"], r.read().decode()


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value}; text_string_to_metric_families raises on bad lines."""
    out = {}
    for fam in text_string_to_metric_families(text):
        assert fam.documentation, fam.name
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def metered(suite, cli):
    """A started suite whose watcher serves metrics; returns (suite, metrics port)."""
    port = free_port()
    suite.configure(**{"local.watcher.metricsport": str(port)})
    r = cli("start-msg")
    assert r.returncode == 0, r.stderr
    return suite, port


# -- a live watcher ---------------------------------------------------------------------------------
def test_scrape_reports_every_component_in_the_exposition_format(metered):
    suite, port = metered
    ctype, text = scrape(port)
    assert ctype.startswith("text/plain; version=0.0.4")
    m = parse(text)
    for c in STORE:
        assert value(m, "msgsrv_component_up", component=c) == 1.0, c
        assert value(m, "msgsrv_component_state", component=c, state="RUNNING") == 1.0
        assert value(m, "msgsrv_component_fatal", component=c) == 0.0
        assert value(m, "msgsrv_component_uptime_seconds", component=c) >= 0.0
    assert value(m, "msgsrv_component_processes", component="pop") == 4.0
    for c in ("ens", "sched", "cert", "dispatcher", "job_controller", "mmp"):  # disabled by the suite
        assert value(m, "msgsrv_component_up", component=c) == 0.0, c
        assert value(m, "msgsrv_component_state", component=c, state="STOPPED") == 1.0
    assert value(m, "msgsrv_restarts_total", unit="store") == 0.0
    assert value(m, "msgsrv_restarts_in_window", unit="store") == 0.0
    assert value(m, "msgsrv_restart_limit") == 2.0
    assert value(m, "msgsrv_restart_window_seconds") == 600.0
    assert value(m, "msgsrv_watcher_ha") == 0.0


def test_kills_count_as_restarts_and_the_third_is_fatal(metered):
    suite, port = metered
    for n in (1, 2):
        pid = suite.pids("imap")[0]
        suite.kill(pid)
        wait_for(lambda pid=pid: (p := suite.pids("imap")) and p[0] != pid
                 and suite.status()["http"]["state"] == "RUNNING", timeout=15)
        m = parse(scrape(port)[1])
        assert value(m, "msgsrv_restarts_total", unit="store") == float(n)
        assert value(m, "msgsrv_restarts_in_window", unit="store") == float(n)
        assert value(m, "msgsrv_component_up", component="imap") == 1.0
    suite.kill(suite.pids("imap")[0])
    wait_for(lambda: suite.status()["imap"]["state"] == "FATAL", timeout=15)
    m = parse(scrape(port)[1])
    assert value(m, "msgsrv_component_fatal", component="imap") == 1.0
    assert value(m, "msgsrv_component_up", component="imap") == 0.0
    assert value(m, "msgsrv_component_state", component="imap", state="FATAL") == 1.0
    assert value(m, "msgsrv_restarts_total", unit="store") == 2.0  # the third failure was not restarted


def test_a_stopped_server_is_shown_frozen_until_it_is_continued(metered, cli):
    """SIGSTOP imapd: its process lives, so the watcher's state stays RUNNING (msprobe finds it hung
    and asks for its restart) and nothing is restarted; but status never shows it as a server that
    serves: `(frozen)` and why, exit 3, the metric 1. A stopped pop worker of four: `(1 of 4
    frozen)`, the others serve (exit 0 once imap is continued). SIGCONT, and all say it serves."""
    suite, port = metered
    pid, worker = suite.pids("imap")[0], suite.pids("pop")[2]
    suite.kill(pid, signal.SIGSTOP)
    suite.kill(worker, signal.SIGSTOP)
    try:
        wait_for(lambda: suite.status()["imap"]["frozen"] and suite.status()["pop"]["frozen"], timeout=5)
        st = suite.status()  # its exit status agrees: 3
        assert st["imap"]["state"] == "RUNNING" and st["imap"]["pids"] == [pid]
        assert st["imap"]["frozen"] == [{"pid": pid, "why": M.FROZEN_STOPPED.format(pid=pid)}]
        assert st["pop"]["frozen"] == [{"pid": worker, "why": M.FROZEN_STOPPED.format(pid=worker)}]
        assert not any(st[c]["frozen"] for c in STORE if c not in ("imap", "pop"))
        r = cli("watcher", "status")
        assert r.returncode == 3
        rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines()[1:] if ln.split()}
        assert rows["imap"][2:4] == ["RUNNING", "(frozen)"] and rows["pop"][2:6] == ["RUNNING", "(1", "of", "4"]
        assert r.stdout.splitlines()[-2:] == [f"imap: {M.FROZEN_STOPPED.format(pid=pid)}",
                                              f"pop: {M.FROZEN_STOPPED.format(pid=worker)}"]
        m = parse(scrape(port)[1])
        assert value(m, "msgsrv_component_frozen_processes", component="imap") == 1.0
        assert value(m, "msgsrv_component_frozen_processes", component="pop") == 1.0
        assert value(m, "msgsrv_component_frozen_processes", component="http") == 0.0
        suite.kill(pid, signal.SIGCONT)
        wait_for(lambda: not suite.status()["imap"]["frozen"], timeout=5)
        assert cli("watcher", "status").returncode == 0  # three pop workers serve
    finally:
        suite.kill(pid, signal.SIGCONT)
        suite.kill(worker, signal.SIGCONT)
    wait_for(lambda: not suite.status()["pop"]["frozen"], timeout=5)
    r = cli("watcher", "status")
    assert r.returncode == 0 and "frozen" not in r.stdout
    assert value(parse(scrape(port)[1]), "msgsrv_component_frozen_processes", component="pop") == 0.0
    assert suite.pids("imap") == [pid] and suite.status()["imap"]["restarts"] == 0


def test_last_probe_times_and_disk_free_come_from_the_history(metered, root):
    suite, port = metered
    m = parse(scrape(port)[1])
    assert not [k for k in m if k[0].startswith(("msgsrv_probe_", "msgsrv_disk_"))]  # no history yet
    hist = History(root.history_db)
    hist.record([("imap", 0.5, True), ("pop", 12.0, False), ("disk:store", 40.0, True)], now=1000.0)
    hist.record([("imap", 0.25, True), ("disk:store", 37.5, True)], now=2000.0)
    m = parse(scrape(port)[1])
    assert value(m, "msgsrv_probe_response_seconds", service="imap") == 0.25
    assert value(m, "msgsrv_probe_healthy", service="imap") == 1.0
    assert value(m, "msgsrv_probe_timestamp_seconds", service="imap") == 2000.0
    assert value(m, "msgsrv_probe_response_seconds", service="pop") == 12.0
    assert value(m, "msgsrv_probe_healthy", service="pop") == 0.0
    assert value(m, "msgsrv_disk_free_percent", disk="store") == 37.5
    assert value(m, "msgsrv_disk_timestamp_seconds", disk="store") == 2000.0


def test_msprobe_pass_shows_up_in_the_next_scrape(metered, cli):
    suite, port = metered
    suite.cli("configutil", "-o", "local.autorestart", "-v", "no")
    r = cli("msprobe")  # the stand-ins greet but speak no protocol: every probe fails
    assert r.returncode == 1, r.stdout + r.stderr
    m = parse(scrape(port)[1])
    for svc in ("imap", "pop"):
        assert 0.0 < value(m, "msgsrv_probe_response_seconds", service=svc) < 5.0
        assert value(m, "msgsrv_probe_healthy", service=svc) == 0.0
        assert value(m, "msgsrv_probe_timestamp_seconds", service=svc) == pytest.approx(time.time(), abs=30)
    assert 0.0 <= value(m, "msgsrv_disk_free_percent", disk="store") <= 100.0


def test_bad_requests_are_refused_and_the_watcher_is_unharmed(metered):
    suite, port = metered
    assert raw(port, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert raw(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert raw(port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431 ")
    head = raw(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port)) as idle:  # a silent client blocks nobody
        idle.sendall(b"GET /met")
        assert value(parse(scrape(port)[1]), "msgsrv_component_up", component="imap") == 1.0
    assert suite.status()["imap"]["state"] == "RUNNING"


def test_metrics_listen_on_loopback_only(metered):
    suite, port = metered
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("ss (iproute2) not available")
    assert [ln.split()[3] for ln in out.stdout.splitlines()] == [f"127.0.0.1:{port}"]


def test_metrics_port_in_use_is_logged_and_supervision_goes_on(suite, cli):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        suite.configure(**{"local.watcher.metricsport": str(port)})
        r = cli("start-msg")
        assert r.returncode == 0, r.stderr
        assert any(ln.startswith(LISTEN_FAILED.format(host="127.0.0.1", port=port, reason=""))
                   for ln in suite.log_lines()), suite.log_lines()
        assert suite.status()["imap"]["state"] == "RUNNING"


def test_promtool_accepts_the_exposition(metered):
    suite, port = metered
    promtool = need("promtool", "prometheus")
    text = scrape(port)[1]
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


# -- the pure renderer -----------------------------------------------------------------------------
def _row(name, state, pids=(), unit=None, restarts=0, uptime=None):
    return {"name": name, "daemon": name, "state": state, "pids": list(pids), "uptime": uptime,
            "restarts": restarts, "unit": unit}


def test_render_is_parseable_and_names_each_series_once():
    snap = Snapshot([_row("imap", "RUNNING", [1, 2], "store", 1, 3.5), _row("store", "BACKOFF", [], "store", 1),
                     _row("ens", "STOPPED")],
                    {"store": 3}, 2, 300.0, True,
                    {"imap": Sample(0.1, True, 10.0), "disk:queue": Sample(55.0, False, 11.0)})
    m = parse(render(snap).decode())
    assert value(m, "msgsrv_component_up", component="imap") == 1.0
    assert value(m, "msgsrv_component_up", component="store") == 0.0  # BACKOFF is not up
    assert value(m, "msgsrv_component_processes", component="imap") == 2.0
    assert value(m, "msgsrv_component_uptime_seconds", component="imap") == 3.5
    assert value(m, "msgsrv_component_uptime_seconds", component="ens") is None
    assert value(m, "msgsrv_restarts_total", unit="store") == 3.0
    assert value(m, "msgsrv_restarts_total", unit="mmp") == 0.0  # every unit is present from the start
    assert value(m, "msgsrv_restarts_in_window", unit="store") == 1.0
    assert value(m, "msgsrv_restart_window_seconds") == 300.0
    assert value(m, "msgsrv_watcher_ha") == 1.0
    assert value(m, "msgsrv_disk_free_percent", disk="queue") == 55.0
    assert value(m, "msgsrv_probe_response_seconds", service="disk:queue") is None
    names = [f.name for f in families(snap)]
    assert len(names) == len(set(names))


def test_last_samples_reads_the_newest_row_per_series_without_writing(tmp_path):
    db = tmp_path / "counters.sqlite"
    assert last_samples(db) == {}
    assert not db.exists()  # read-only: a scrape never creates msprobe's database
    History(db).record([("smtp", 1.0, True)], now=5.0)
    History(db).record([("smtp", 2.0, False)], now=6.0)
    before = db.stat().st_mtime_ns
    assert last_samples(db) == {"smtp": Sample(2.0, False, 6.0)}
    assert db.stat().st_mtime_ns == before


# -- a real Prometheus, one scrape (Debian package prometheus) --------------------------------------
@pytest.mark.integration
def test_real_prometheus_scrapes_the_watcher(metered, tmp_path):
    suite, port = metered
    prometheus = need("prometheus", "prometheus")
    web = free_ports(1)[0]
    conf = tmp_path / "prometheus.yml"
    conf.write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: msgsrv
    static_configs:
      - targets: ["127.0.0.1:{port}"]
""")
    proc = subprocess.Popen([prometheus, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{web}"],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"))
    try:
        def query():
            q = urllib.parse.urlencode({"query": 'msgsrv_component_up{component="imap"}'})
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/query?{q}", timeout=2) as r:
                    res = json.load(r)["data"]["result"]
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                return None
            return res or None

        t0 = time.monotonic()
        try:
            res = wait_for(query, timeout=60, every=0.5)
        except AssertionError:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-500:]}")
            raise
        assert res[0]["metric"]["job"] == "msgsrv"
        assert float(res[0]["value"][1]) == 1.0
        assert time.monotonic() - t0 < 60
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
