"""One msprobe pass against real sockets: verdicts, restart requests, default log, history."""

import asyncio
import json
import time

from probe_fakes import FakeWatcher, closed_port

from msgsrv.config.store import ConfigStore
from msgsrv.probe.history import History
from msgsrv.probe.runner import run_pass, targets
from msgsrv.probe.verdict import Status


def configure(root, **sets):
    ConfigStore(root.config_file).update({k: str(v) for k, v in sets.items()})


def default_log(root) -> str:
    return root.default_log.read_text() if root.default_log.exists() else ""


def test_thresholds_fall_back_as_documented(root):
    configure(root, **{"service.readtimeout": 7, "local.probe.imap.timeout": 2,
                       "local.probe.warningthreshold": 3, "local.probe.pop.warningthreshold": 1})
    t = {x.service: x for x in targets(ConfigStore(root.config_file), ["imap", "pop"])}
    assert (t["imap"].timeout, t["imap"].warn) == (2, 3)
    assert (t["pop"].timeout, t["pop"].warn) == (7, 1)
    assert t["imap"].port == 10143


def test_client_facing_services_are_probed_on_service_listenaddr(root):
    configure(root, **{"service.listenaddr": "127.0.0.2"})
    t = {x.service: x.host for x in targets(ConfigStore(root.config_file), ["imap", "smtp", "store", "ens"])}
    assert t == {"imap": "127.0.0.2", "smtp": "127.0.0.2", "store": "127.0.0.1", "ens": "127.0.0.1"}
    configure(root, **{"service.listenaddr": "0.0.0.0"})
    assert targets(ConfigStore(root.config_file), ["imap"])[0].host == "127.0.0.1"


def test_defaults_probe_every_enabled_component_but_mmp(root):
    names = [t.service for t in targets(ConfigStore(root.config_file))]
    assert names == ["ens", "store", "imap", "imaps", "pop", "pops", "cert", "http", "https", "sched", "smtp", "lmtp", "smtps",
                     "job_controller"]
    configure(root, **{"local.imta.enable": "no", "local.mmp.enable": "yes"})
    names = [t.service for t in targets(ConfigStore(root.config_file))]
    assert "smtp" not in names and "job_controller" not in names and "mmp" in names


def test_a_service_switched_off_is_left_out_of_the_pass(root):
    store = ConfigStore(root.config_file)
    store.update({"local.probe.lmtp.enable": "no"})
    names = [t.service for t in targets(store)]
    assert "lmtp" not in names and "smtp" in names
    assert [t.service for t in targets(store, ["lmtp"])] == ["lmtp"]  # named on the command line: probed


def test_healthy_pass_logs_and_records_history(root, fakes):
    configure(root, **{"service.imap.port": fakes.start("imap"), "service.pop.port": fakes.start("pop")})
    report = asyncio.run(run_pass(root, ["imap", "pop"]))
    assert [o.status for o in report.outcomes] == [Status.OK, Status.OK]
    assert report.healthy and report.errors == []
    log = default_log(root)
    assert "msprobe Info: imap server response time " in log
    assert "msprobe Info: pop server response time " in log
    assert [s.series for s in History(root.history_db).summaries()] == ["imap", "pop"]


def reports(w) -> list[tuple[str, ...]]:
    """The requests the fake watcher got, without the probe's start time (HUNG <svc> <since> ...)."""
    return sorted((r[0], r[1], *r[3:]) for r in w.requests)


def test_slow_above_warning_is_a_warning_only(root, fakes):
    configure(root, **{"local.store.port": fakes.start("slow", 0.3), "local.probe.store.warningthreshold": 0.1,
                       "local.probe.store.timeout": 2, "local.autorestart": "yes"})
    with FakeWatcher(root) as w:
        configure(root, **{"local.watcher.port": w.port})
        report = asyncio.run(run_pass(root, ["store"]))
    assert report.outcomes[0].status is Status.WARN
    assert report.healthy and report.restarts == [] and w.requests == []
    assert "msprobe Warning: store server response time 0.3" in default_log(root)
    assert "exceeds warning threshold 0.1s" in default_log(root)


def test_hung_imap_asks_watcher_to_restart_store_group(root, fakes):
    configure(root, **{"service.imap.port": fakes.start("hang"), "local.probe.imap.timeout": 0.3,
                       "local.autorestart": "yes"})
    with FakeWatcher(root) as w:
        configure(root, **{"local.watcher.port": w.port})
        seen = []
        t0 = time.monotonic()
        report = asyncio.run(run_pass(root, ["imap"], on_verdicts=lambda o: seen.append(time.monotonic() - t0)))
    assert seen[0] < 0.3 + 0.5
    assert report.outcomes[0].status is Status.HUNG
    assert reports(w) == [("HUNG", "imap", "did", "not", "respond", "within", "0.3s")]
    assert report.restarts == [["store", "imap", "pop", "http"]]
    log = default_log(root)
    assert "msprobe Error: imap server did not respond within 0.3s" in log
    assert "msprobe Error: requesting restart of store imap pop http" in log
    assert "Requested restart of store imap pop http from the watcher" in log
    assert not report.healthy


def test_hung_smtp_restarts_the_dispatcher(root, fakes):
    configure(root, **{"service.smtp.port": fakes.start("hang"), "service.lmtp.port": fakes.start("hang"),
                       "service.readtimeout": 0.3, "local.autorestart": "yes"})
    with FakeWatcher(root) as w:
        configure(root, **{"local.watcher.port": w.port})
        asyncio.run(run_pass(root, ["smtp", "lmtp"]))
    assert [r[:2] for r in reports(w)] == [("HUNG", "lmtp"), ("HUNG", "smtp")]  # the watcher merges them


def test_hung_ens_is_logged_never_restarted(root, fakes):
    configure(root, **{"local.ens.port": fakes.start("hang"), "local.probe.ens.timeout": 0.3,
                       "local.autorestart": "yes"})
    with FakeWatcher(root) as w:
        configure(root, **{"local.watcher.port": w.port})
        report = asyncio.run(run_pass(root, ["ens"]))
    assert reports(w) == [("HUNG", "ens", "did", "not", "respond", "within", "0.3s")]  # logged by the watcher
    assert report.outcomes[0].status is Status.HUNG
    assert "msprobe Error: ens server cannot be restarted automatically" in default_log(root)


def test_autorestart_no_reports_the_hang_and_requests_no_restart(root, fakes):
    configure(root, **{"service.imap.port": fakes.start("hang"), "local.probe.imap.timeout": 0.3})
    with FakeWatcher(root) as w:
        configure(root, **{"local.watcher.port": w.port})
        report = asyncio.run(run_pass(root, ["imap"]))
    # SPEC §1: non-response messages reach data/log/watcher whether or not autorestart is on
    assert [r[:2] for r in reports(w)] == [("HUNG", "imap")] and report.restarts == []
    assert "local.autorestart is off; not restarting store imap pop http" in default_log(root)


def test_refused_counts_as_down_and_restarts(root):
    configure(root, **{"service.pop.port": closed_port(), "local.autorestart": "yes"})
    with FakeWatcher(root) as w:
        configure(root, **{"local.watcher.port": w.port})
        report = asyncio.run(run_pass(root, ["pop"]))
    assert report.outcomes[0].status is Status.DOWN
    assert reports(w) == [("HUNG", "pop", "connection", "refused")]


def test_watcher_unreachable_is_logged_not_fatal(root, fakes):
    configure(root, **{"service.imap.port": fakes.start("hang"), "local.probe.imap.timeout": 0.2,
                       "local.autorestart": "yes", "local.watcher.port": closed_port()})
    root.token_file.write_text("x\n")
    report = asyncio.run(run_pass(root, ["imap"]))
    assert any("unable to request restart of store imap pop http" in e for e in report.errors)


def test_full_pass_checks_disks_and_reports_low_space(root):
    configure(root, **{"local.ens.enable": "no", "local.store.enable": "no", "service.imap.enable": "no",
                       "service.pop.enable": "no", "service.http.enable": "no", "local.sched.enable": "no",
                       "local.imta.enable": "no", "local.cert.enable": "no",
                       "alarm.diskavail.msgalarmthreshold": 100, "alarm.msgalarmnoticeport": closed_port()})
    report = asyncio.run(run_pass(root))
    assert report.outcomes == []
    assert [d.name for d in report.disks] == ["store", "queue"]
    assert all(d.low for d in report.disks) and not report.healthy
    log = default_log(root)
    assert "msprobe Error: store partition" in log and "threshold 100%" in log
    # the alarm mail could not be sent: logged, the pass still completes
    assert "unable to send alarm mail to 127.0.0.1:" in log  # the default host
    assert json.dumps(report.to_dict())


def test_a_damaged_history_file_is_set_aside_and_said(root, fakes):
    configure(root, **{"service.imap.port": fakes.start("imap")})
    root.history_db.parent.mkdir(parents=True, exist_ok=True)
    root.history_db.write_bytes(b"\x00garbage" * 512)
    report = asyncio.run(run_pass(root, ["imap"]))
    assert report.healthy  # history is never worth failing a pass
    aside = list(root.history_db.parent.glob("counters.sqlite.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"\x00garbage" * 512
    assert f"msprobe Warning: history in {root.history_db} was damaged" in default_log(root)
    assert [s.series for s in History(root.history_db).summaries()] == ["imap"]
