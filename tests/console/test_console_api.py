"""Every console endpoint against a live watcher (stand-in servers on free ports), refusals included.

The refusals check that nothing was done: the pids and the watcher log are the same afterwards,
and supervision goes on (a kill -9 during the abuse is still restarted).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from msgsrv import messages as M
from msgsrv.components import PROBE_TARGETS, START_ORDER
from msgsrv.console import link, reader
from msgsrv.console import server as console_server
from msgsrv.console import text as T
from msgsrv.console import timeline as timeline_groups
from msgsrv.console.headers import CSP, SECURITY_HEADERS
from msgsrv.probe.history import History
from msgsrv.watcher import journal
from tests.conftest import free_port, wait_for
from tests.console.conftest import STORE, Client, Live, start_live


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    # a 1 s restart window: the tests restart the store group often, the budget is not their subject
    s = start_live(tmp_path_factory, builtin=False, **{"local.autorestart.timeout": "1"})
    yield s
    s.stop()


@pytest.fixture
def api(live):
    return live.session()


def settled(live) -> None:
    """No operation under way or queued, every store member running: a restart that an earlier
    msprobe pass asked for (the stand-ins answer no protocol, so msprobe reports them) is over."""
    def quiet():
        st = live.session_status()
        rows = {r["name"]: r for r in st["components"]}
        return not st["watcher"]["busy"] and all(rows[c]["state"] == "RUNNING" for c in STORE)

    wait_for(quiet, timeout=30, every=0.05)


def snapshot(live) -> tuple[dict, list[str]]:
    settled(live)
    return {c: live.pids(c) for c in STORE}, live.log_lines()


def raw(port: int, data: bytes, timeout: float = 15) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def fresh_budget(live, api) -> None:
    """Every member running and no restart left in the (1 s) window."""
    live.wait_running(*STORE)
    wait_for(lambda: next(u for u in api.get("/api/status").json()["units"] if u["name"] == "store")["restarts"] == 0,
             timeout=5)


def wait_action(api: Client, action_id: str, timeout: float = 30) -> dict:
    return wait_for(lambda: (a := api.get(f"/api/actions/{action_id}").json())["done"] and a, timeout=timeout)


# -- start-msg and the link ---------------------------------------------------------------------------
def test_start_msg_prints_the_console_link_with_the_token(live):
    r = live.cli("start-msg")  # everything runs: nothing to start, the link again
    assert r.returncode == 0, r.stderr
    url = f"http://127.0.0.1:{live.port}/?token={live.token}"
    assert r.stdout.splitlines()[-1] == link.LINE.format(url=url)
    assert live.url_file().read_text().strip() == url
    assert oct(live.url_file().stat().st_mode & 0o777) == "0o600"


def test_the_console_listens_on_loopback_only(live):
    import subprocess

    out = subprocess.run(["ss", "-Hltn", f"sport = :{live.port}"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("ss (iproute2) not available")
    assert [ln.split()[3] for ln in out.stdout.splitlines()] == [f"127.0.0.1:{live.port}"]


# -- login ---------------------------------------------------------------------------------------------
def test_token_link_gives_a_strict_httponly_session_and_leaves_the_address_bar(live):
    r = Client(live.port).get(f"/?token={live.token}")
    assert r.status == 303 and r.headers["Location"] == "/"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("msgsrv_console=")
    attrs = {a.strip().split("=")[0].lower(): a for a in cookie.split(";")[1:]}
    assert "httponly" in attrs and attrs["samesite"].strip().lower() == "samesite=strict" and "path" in attrs
    assert live.token not in cookie


def test_wrong_token_is_401_and_makes_no_session(live):
    r = Client(live.port).get("/?token=" + "0" * 64)
    assert r.status == 401 and "Set-Cookie" not in r.headers
    assert T.BAD_TOKEN in r.text and "imapd" not in r.text


def test_login_form_and_logout(live):
    c = Client(live.port)
    r = c.post("/login", body=f"token={live.token}", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 303
    c.cookie = r.headers["Set-Cookie"].split(";")[0]
    assert c.get("/api/status").status == 200
    page = c.get("/")
    c.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    assert c.post("/logout").status == 200
    assert c.get("/api/status").status == 401  # the session is gone on the server too


@pytest.mark.parametrize("body", [b"", b"token", b"tok=1&&", b"\xff\xfe", b"token=a&token=b"])
def test_malformed_login_form_is_400(live, body):
    r = Client(live.port).post("/login", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400 and "token field" in r.text


def test_login_page_is_public_and_shows_no_data(live):
    settled(live)  # imap running (an earlier test's restart may be under way): its pid is at hand
    r = Client(live.port).get("/login")
    assert r.status == 200 and "start-msg" in r.text
    assert "RUNNING" not in r.text and str(live.pids("imap")[0]) not in r.text


# -- refusals: no session, no CSRF, foreign origin -------------------------------------------------------
GETS = ["/", "/plots", "/timeline", "/logs", "/plot/imap.svg", "/api/status", "/api/probes", "/api/history",
        "/api/timeline", "/api/logs", "/api/log?name=watcher", "/api/actions", "/api/actions/1-1",
        "/api/actions/1-1/events"]
POSTS = ["/api/units/store/restart", "/api/components/imap/stop", "/api/components/imap/start", "/api/probe",
         "/logout"]


@pytest.mark.parametrize("path", GETS)
def test_every_page_and_endpoint_needs_a_session(live, path):
    r = Client(live.port).get(path)
    assert r.status == 401, r
    if path.startswith(("/api/", "/plot/")):
        assert r.json() == {"error": T.NEED_LOGIN}
    else:
        assert T.LOGIN_PAGE in r.text and 'class="components"' not in r.text


@pytest.mark.parametrize("path", POSTS)
def test_actions_without_a_session_are_401_and_nothing_is_done(live, path):
    before = snapshot(live)
    r = Client(live.port).post(path, body=b"{}", headers={"Content-Type": "application/json"})
    assert r.status == 401 and r.json() == {"error": T.NEED_LOGIN}
    assert snapshot(live) == before


@pytest.mark.parametrize("path", POSTS[:-1])
def test_actions_without_the_csrf_token_are_401_and_nothing_is_done(live, api, path):
    before = snapshot(live)
    r = api.post(path, csrf=False)
    assert r.status == 401 and r.json() == {"error": T.BAD_CSRF}
    r = api.post(path, csrf=False, headers={"X-CSRF-Token": "x" * 43})
    assert r.status == 401 and r.json() == {"error": T.BAD_CSRF}
    time.sleep(0.3)
    assert snapshot(live) == before


def test_a_foreign_origin_is_refused_even_with_the_csrf_token(live, api):
    before = snapshot(live)
    r = api.post("/api/units/store/restart", headers={"Origin": "http://evil.example"})
    assert r.status == 401 and r.json() == {"error": T.CROSS_ORIGIN}
    assert snapshot(live) == before


def test_a_session_cookie_from_a_guess_is_refused(live):
    c = Client(live.port)
    c.cookie = "msgsrv_console=" + "A" * 43
    assert c.get("/api/status").status == 401


# -- security headers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/login", "/api/status", "/static/console.js", "/nothing", "/plot/imap.svg"])
def test_security_headers_on_every_response(live, api, path):
    r = api.get(path)
    assert r.headers["Content-Security-Policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"


def test_pages_have_no_inline_script_or_style(live, api):
    for path in ("/", "/plots", "/timeline", "/logs", "/login"):
        text = api.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert " style=" not in text and "<style" not in text and " on" + "click=" not in text, path


# -- status and pages -------------------------------------------------------------------------------------
def test_status_lists_every_component_with_state_pids_uptime_budget_and_unit(live, api):
    st = api.get("/api/status").json()
    rows = {r["name"]: r for r in st["components"]}
    assert list(rows) == list(START_ORDER)
    for c in STORE:
        assert rows[c]["state"] == "RUNNING" and rows[c]["pids"] == live.pids(c) and rows[c]["uptime"] >= 0
        assert rows[c]["unit"] == "store" and rows[c]["limit"] == 2 and rows[c]["window"] == 1
    assert rows["ens"]["enabled"] is False and rows["ens"]["state"] == "STOPPED" and rows["ens"]["unit"] is None
    assert st["watcher"]["pid"] == live.pids("watcher")[0] and st["watcher"]["autorestart"] is True
    assert {u["name"] for u in st["units"]} >= {"store", "dispatcher", "cert", "sched"}
    assert st["banners"] == []


def test_overview_page_shows_every_component_and_the_csrf_token(live, api):
    page = api.get("/").text
    for c in START_ORDER:
        assert f'data-component="{c}"' in page
    for pid in live.pids("pop"):
        assert str(pid) in page
    assert f'<meta name="csrf-token" content="{api.csrf}">' in page


def test_a_stopped_server_is_marked_frozen_with_why(live, api):
    """A SIGSTOPped server stays RUNNING (its process lives) but the overview marks it frozen, says
    why, and does not count it among the running; SIGCONT clears it."""
    settled(live)
    pid = live.pids("http")[0]

    def http_row() -> str:
        page = api.get("/").text
        start = page.index('<tr data-component="http"')
        return page[start:page.index("</tr>", start)]

    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: {r["name"]: r for r in api.get("/api/status").json()["components"]}["http"]["frozen"] != [],
                 timeout=5)
        row = http_row()
        assert 'data-f="frozen" >frozen' in row and M.FROZEN_STOPPED.format(pid=pid) in row
        assert 'data-f="frozen" hidden' in api.get("/").text  # the others are not marked
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: 'data-f="frozen" hidden' in http_row(), timeout=5)


def test_static_files_are_served_and_nothing_else(live, api):
    assert api.get("/static/console.css").status == 200
    assert api.get("/static/../views.py").status in (403, 404)
    assert api.get("/static/").status in (403, 404)


def test_unknown_paths_and_methods(live, api):
    r = api.get("/api/nothing")
    assert r.status == 404 and r.json() == {"error": T.NOT_FOUND}
    assert api.request("DELETE", "/api/status").status == 405
    assert api.get("/nothing").status == 404


# -- history, plots, probes ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded(live):
    """Three msprobe-like passes in the history: imap 3 ms, a hang, 4 ms; pop down once; a disk."""
    now = time.time()
    h = History(live.base / "data" / "counters.sqlite")
    h.record([("imap", 0.003, True), ("pop", 0.002, False), ("disk:store", 42.0, True)], now=now - 1200)
    h.record([("imap", 10.0, False), ("pop", 0.004, True)], now=now - 600)
    h.record([("imap", 0.004, True), ("pop", 0.005, True), ("disk:store", 41.5, True)], now=now - 5)
    time.sleep(reader.TTL + 0.1)  # the console reuses a read for at most TTL seconds
    return now


def test_history_json_and_csv(live, api, recorded):
    r = api.get("/api/history?series=imap&range=hour")
    body = r.json()
    assert r.status == 200 and body["count"] == 3 and body["truncated"] is False
    assert [s["value"] for s in body["samples"]] == [0.003, 10.0, 0.004]
    assert [s["ok"] for s in body["samples"]] == [True, False, True]
    csv_r = api.get("/api/history?series=imap,pop&range=hour&format=csv")
    assert csv_r.status == 200 and csv_r.headers["Content-Type"].startswith("text/csv")
    lines = csv_r.text.splitlines()
    assert lines[0] == "time,ts,series,value,ok" and len(lines) == 7
    assert api.get(f"/api/history?series=disk:store&since={recorded - 700}").json()["count"] == 1
    assert api.get("/api/history?series=imap&limit=1").json()["samples"][0]["value"] == 0.004


@pytest.mark.parametrize(("query", "status", "error"), [
    ("series=nosuch", 404, T.UNKNOWN_SERIES.format(name="nosuch")),
    ("series=disk:../x", 404, T.UNKNOWN_SERIES.format(name="disk:../x")),
    ("range=year", 400, T.BAD_RANGE.format(known="hour, day, week")),
    ("since=yesterday", 400, T.BAD_NUMBER.format(name="since")),
    ("limit=0", 400, T.BAD_NUMBER.format(name="limit") + " from 1 to 10000"),
    ("format=xml", 400, T.BAD_FORMAT),
])
def test_history_refusals(live, api, query, status, error):
    r = api.get("/api/history?" + query)
    assert (r.status, r.json()) == (status, {"error": error})


def test_probes_give_thresholds_and_the_last_result(live, api, recorded):
    p = api.get("/api/probes").json()
    rows = {r["service"]: r for r in p["services"]}
    # the store group's services (and their TLS ports) are enabled here, nothing else
    assert {"store", "imap", "pop", "http"} <= set(rows) <= {s for s, (c, _) in PROBE_TARGETS.items() if c in STORE}
    assert rows["imap"]["warn"] == 5.0 and rows["imap"]["timeout"] == 10.0
    assert rows["imap"]["last"]["value"] == 0.004 and rows["imap"]["last"]["status"] == "ok"
    assert rows["http"]["last"] is None
    assert p["disks"] == [{"disk": "store", "ts": pytest.approx(recorded - 5), "free_percent": 41.5, "ok": True}]


def test_plot_svg_marks_the_hang_and_draws_both_thresholds(live, api, recorded):
    r = api.get("/plot/imap.svg?range=hour")
    assert r.status == 200 and r.headers["Content-Type"].startswith("image/svg+xml")
    assert r.text.count('class="pt ok"') == 2 and r.text.count('class="pt hung"') == 1
    assert 'class="warn-line"' in r.text and 'class="timeout-line"' in r.text
    assert api.get("/plot/nosuch.svg").status == 404
    assert api.get("/plot/imap.svg?range=year").status == 400
    plots_page = api.get("/plots?range=day").text
    assert plots_page.count("<svg") == len(api.get("/api/probes").json()["services"])
    assert 'data-series="imap"' in plots_page


# -- logs --------------------------------------------------------------------------------------------------
def test_log_tail_then_follow_by_offset(live, api):
    first = api.get("/api/log?name=watcher").json()
    assert first["name"] == "watcher" and any(ln.endswith(f"Starting http server ... {live.pids('http')[0]}")
                                              or "Starting http server" in ln for ln in first["lines"])
    assert api.get(f"/api/log?name=watcher&offset={first['offset']}").json()["lines"] == []
    fresh_budget(live, api)
    pid = live.pids("imap")[0]
    os.kill(pid, signal.SIGKILL)
    live.wait_running(*STORE)
    more = wait_for(lambda: (g := api.get(f"/api/log?name=watcher&offset={first['offset']}").json())["lines"]
                    and any("Starting http server" in ln for ln in g["lines"]) and g)
    assert any(f"Watched 'imapd' process {pid} exited abnormally" in ln for ln in more["lines"])
    assert "imap.out" in api.get("/api/logs").json()["logs"]
    assert api.get("/api/log?name=imap.out&lines=5").status == 200


@pytest.mark.parametrize("name", ["../config/msg.toml", "nosuch", "/etc/passwd", "watcher.token"])
def test_only_known_logs_are_served(live, api, name):
    r = api.get(f"/api/log?name={name}")
    assert r.status == 404 and r.json()["error"].startswith(f"unknown log {name!r}")


def test_log_number_refusals(live, api):
    assert api.get("/api/log?name=watcher&offset=-1").status == 400
    assert api.get("/api/log?name=watcher&lines=abc").status == 400


# -- actions --------------------------------------------------------------------------------------------------
def test_restart_store_group_goes_through_the_watcher_and_names_who_asked(live, api):
    fresh_budget(live, api)
    old = {c: live.pids(c) for c in STORE}
    r = api.post("/api/units/store/restart")
    assert r.status == 202
    body = r.json()
    assert body["url"] == f"/api/actions/{body['action']['id']}"
    a = wait_action(api, body["action"]["id"])
    assert a["ok"] is True and a["who"] == "127.0.0.1"
    assert a["lines"][0] == "Received request to restart:  store imap pop http"
    assert re.fullmatch(r"Starting http server \.+ \d+", a["lines"][-1])
    for c in STORE:
        assert live.pids(c) and not set(live.pids(c)) & set(old[c]), c
    assert "Received request to restart:  store imap pop http (console, 127.0.0.1)" in live.log_lines()
    assert api.get("/api/actions").json()["actions"][0]["id"] == a["id"]


def test_action_progress_as_server_sent_events(live, api):
    fresh_budget(live, api)
    r = api.post("/api/units/store/restart")
    action_id = r.json()["action"]["id"]
    events = api.get(f"/api/actions/{action_id}/events")
    assert events.status == 200 and events.headers["Content-Type"].startswith("text/event-stream")
    chunks = [json.loads(ln[len("data: "):]) for ln in events.text.splitlines()
              if ln.startswith("data: ") and ln != "data: {}"]
    assert len(chunks) >= 2 and chunks[-1]["done"] and chunks[-1]["ok"]
    lines = [ln for ch in chunks for ln in ch["lines"]]
    assert lines[0] == "Received request to restart:  store imap pop http"
    assert any(ln.startswith("Starting store server") for ln in lines)
    assert "event: end" in events.text
    live.wait_running(*STORE)


def test_stop_and_start_one_component_with_wait(live, api):
    live.wait_running(*STORE)
    r = api.post("/api/components/http/stop", body=b'{"wait": 30}', headers={"Content-Type": "application/json"})
    assert r.status == 200 and r.json()["action"]["ok"] is True
    assert r.json()["action"]["lines"][-1].startswith("Stopping http server")
    assert live.pids("http") == [] and live.state("http") == "STOPPED"
    assert "Received request to stop:  http (console, 127.0.0.1)" in live.log_lines()
    r = api.post("/api/components/http/start", body=b'{"wait": 30}', headers={"Content-Type": "application/json"})
    assert r.status == 200 and r.json()["action"]["ok"] is True
    assert re.fullmatch(r"Starting http server \.+ \d+", r.json()["action"]["lines"][-1])
    live.wait_running("http")
    assert "Received request to start:  http (console, 127.0.0.1)" in live.log_lines()


def test_start_of_a_disabled_component_is_409_and_nothing_is_done(live, api):
    before = snapshot(live)
    r = api.post("/api/components/ens/start")
    assert (r.status, r.json()) == (409, {"error": T.NOT_ENABLED.format(c="ens", switch="local.ens.enable")})
    assert snapshot(live) == before


def test_run_msprobe_now(live, api):
    since = timeline(api, limit=1)["newest"]
    r = api.post("/api/probe", body=b'{"wait": 60}', headers={"Content-Type": "application/json"})
    a = r.json()["action"]
    assert r.status == 200 and a["done"], a
    assert a["ok"] is True  # the stand-ins speak no protocol: every probe fails, the pass itself works
    assert any(ln.startswith("imap ") for ln in a["lines"]) and a["lines"][-1] == T.PROBE_UNHEALTHY
    assert "Received request to run msprobe (console, 127.0.0.1)" in live.log_lines()
    # the timeline: the admin's request, then msprobe's reports (hangs, by msprobe itself)
    requests = timeline(api, since=since, group="request")["events"]
    assert [(e["detail"], e["by"]) for e in requests] == [("run msprobe", "(console, 127.0.0.1)")]
    hangs = timeline(api, since=since, kind="hang")["events"]
    assert {e["component"] for e in hangs} >= {"imap", "pop", "http"}
    assert all(re.fullmatch(r"msprobe\[\d+\]", e["by"]) and e["group"] == "failure" for e in hangs), hangs


def test_bearer_token_needs_no_session_or_csrf(live):
    c = Client(live.port)
    auth = {"Authorization": f"Bearer {live.token}"}
    assert c.get("/api/status", headers=auth).status == 200
    r = c.post("/api/probe", headers=auth)
    assert r.status == 202
    assert c.get("/api/status", headers={"Authorization": "Bearer wrong"}).status == 401
    wait_action(Client(live.port).login(live.token), r.json()["action"]["id"], timeout=60)


@pytest.mark.parametrize(("path", "error"), [
    ("/api/components/nosuch/stop", T.UNKNOWN_COMPONENT.format(name="nosuch", known=" ".join(START_ORDER))),
    ("/api/components/smtp/start", T.UNKNOWN_COMPONENT.format(name="smtp", known=" ".join(START_ORDER))),
    ("/api/units/ens/restart", T.UNKNOWN_UNIT.format(
        name="ens", known="store cert sched dispatcher job_controller mmp")),
])
def test_unknown_targets_are_404_and_nothing_is_done(live, api, path, error):
    before = snapshot(live)
    r = api.post(path)
    assert (r.status, r.json()) == (404, {"error": error})
    assert snapshot(live) == before


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "not JSON"), (b"[1, 2]", "expected a JSON object"), (b'{"force": true}', "unknown field 'force'"),
    (b'{"wait": "soon"}', "wait must be seconds"), (b'{"wait": 1e9}', "wait must be seconds"),
    (b"\xff\xfe\xfd", "not JSON"),
])
def test_malformed_action_bodies_are_400_and_nothing_is_done(live, api, body, reason):
    before = snapshot(live)
    r = api.post("/api/units/store/restart", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json()["error"].startswith("malformed request body: ") and reason in r.json()["error"]
    assert snapshot(live) == before


def test_unknown_action_is_404(live, api):
    assert api.get("/api/actions/nope").json() == {"error": T.UNKNOWN_ACTION.format(id="nope")}
    assert api.get("/api/actions/nope/events").status == 404


# -- the timeline (the watcher's journal, data/run/journal.jsonl) -------------------------------------------------
JSON = {"Content-Type": "application/json"}


def timeline(api: Client, **query) -> dict:
    r = api.get("/api/timeline?" + urlencode(query))
    assert r.status == 200, r
    return r.json()


def journal_records(live) -> list[dict]:
    text = (live.base / "data" / "run" / journal.NAME).read_text()
    return [json.loads(ln) for ln in text.splitlines()]


def test_timeline_is_the_watchers_journal_newest_first(live, api):
    fresh_budget(live, api)
    tl = timeline(api, limit=1000)
    assert tl["truncated"] is False and tl["count"] == tl["matched"] == len(tl["events"]) > 0
    events = tl["events"]
    assert [e["t"] for e in events] == sorted((e["t"] for e in events), reverse=True)
    on_disk = journal_records(live)  # read after the request: the watcher may have added more since
    assert [{k: v for k, v in e.items() if k != "group"} for e in reversed(events)] == on_disk[:len(events)]
    assert events[-1]["kind"] == "watcher-start" and events[-1]["pid"] == live.pids("watcher")[0]
    assert all(e["group"] == timeline_groups.GROUP_OF[e["kind"]] for e in events)
    assert tl["newest"] == events[0]["t"]


def test_a_crash_and_its_restart_appear_in_the_timeline(live, api):
    fresh_budget(live, api)
    since = timeline(api, limit=1)["newest"]
    old = live.pids("imap")[0]
    os.kill(old, signal.SIGKILL)
    events = wait_for(lambda: (ev := timeline(api, since=since, unit="store")["events"])
                      and any(e["kind"] == "restart-done" for e in ev) and ev, timeout=20)
    kinds = [e["kind"] for e in reversed(events)]  # oldest first
    assert kinds.index("exit") < kinds.index("restart-queued") < kinds.index("restart-started") \
        < kinds.index("restart-done")
    crash = next(e for e in events if e["kind"] == "exit")
    assert (crash["component"], crash["unit"], crash["pid"], crash["group"]) == ("imap", "store", old, "failure")
    assert crash["detail"] == f"Watched 'imapd' process {old} exited abnormally (killed by signal 9 (SIGKILL))"
    started = [e for e in events if e["kind"] == "started" and e["component"] == "imap"]
    assert [e["pid"] for e in started] == [live.pids("imap")[0]]
    assert next(e for e in events if e["kind"] == "restart-started")["detail"] == "store imap pop http"
    failures = timeline(api, since=since, group="failure")["events"]
    assert [(e["kind"], e["pid"]) for e in failures] == [("exit", old)]
    mine = timeline(api, since=since, component="imap", kind="exit,started")["events"]
    assert [e["kind"] for e in mine] == ["started", "exit"]


def test_console_actions_are_requests_in_the_timeline_naming_who_asked(live, api):
    fresh_budget(live, api)
    since = timeline(api, limit=1)["newest"]
    assert api.post("/api/units/store/restart", body=b'{"wait": 30}', headers=JSON).json()["action"]["ok"]
    assert api.post("/api/components/http/stop", body=b'{"wait": 30}', headers=JSON).json()["action"]["ok"]
    assert api.post("/api/components/http/start", body=b'{"wait": 30}', headers=JSON).json()["action"]["ok"]
    requests = timeline(api, since=since, group="request")["events"]
    who = "(console, 127.0.0.1)"
    assert [(e["detail"], e["by"]) for e in requests] == [("start http", who), ("stop http", who),
                                                          ("restart store", who)]
    begun = timeline(api, since=since, kind="restart-started")["events"]
    assert [(e["detail"], e["by"]) for e in begun] == [("store imap pop http", who)]
    assert [e["kind"] for e in timeline(api, since=since, group="process", component="http")["events"]][:2] \
        == ["started", "stopped"]
    assert timeline(api, since=since, group="failure")["events"] == []  # asked for: none is a failure


def test_timeline_limit_since_and_until(live, api):
    tl = timeline(api, limit=2)
    assert tl["count"] == 2 and tl["truncated"] is True and tl["matched"] > 2
    newest = tl["events"][0]["t"]
    older = timeline(api, until=tl["events"][1]["t"], limit=1000)
    assert older["events"][0] == tl["events"][1] and all(e["t"] <= tl["events"][1]["t"] for e in older["events"])
    assert all(e["t"] > newest for e in timeline(api, since=newest)["events"])


@pytest.mark.parametrize(("query", "error"), [
    ("kind=crash", T.UNKNOWN_FILTER.format(name="kind", value="crash", known=" ".join(journal.KINDS))),
    ("kind=exit,,hangs", T.UNKNOWN_FILTER.format(name="kind", value="hangs", known=" ".join(journal.KINDS))),
    ("group=failures", T.UNKNOWN_FILTER.format(name="group", value="failures",
                                               known=" ".join(timeline_groups.GROUPS))),
    ("component=smtp", T.UNKNOWN_FILTER.format(name="component", value="smtp", known=" ".join(START_ORDER))),
    ("unit=ens", T.UNKNOWN_FILTER.format(name="unit", value="ens",
                                         known="store cert sched dispatcher job_controller mmp")),
    ("limit=0", T.BAD_NUMBER.format(name="limit") + " from 1 to 1000"),
    ("limit=1001", T.BAD_NUMBER.format(name="limit") + " from 1 to 1000"),
    ("since=yesterday", T.BAD_NUMBER.format(name="since")),
    ("until=-1", T.BAD_NUMBER.format(name="until")),
    ("since=nan", T.BAD_NUMBER.format(name="since")),
])
def test_timeline_refusals(live, api, query, error):
    r = api.get(f"/api/timeline?{query}")
    assert (r.status, r.json()) == (400, {"error": error})


def test_timeline_page_shows_the_journal_with_its_filter(live, api):
    # a failure of imap of its own (it passed only after a test that made one, in the same worker)
    fresh_budget(live, api)
    old = live.pids("imap")[0]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: any(e["pid"] == old for e in timeline(api, group="failure", component="imap")["events"]),
             timeout=20)
    page = api.get("/timeline?group=failure&component=imap").text
    assert 'id="timeline" data-group="failure" data-component="imap"' in page
    rows = re.findall(r'<tr class="ev-([a-z-]+) g-([a-z]+)" data-kind="[a-z-]+" data-component="([a-z_]*)"', page)
    assert rows and all(g == "failure" and c == "imap" for _, g, c in rows)
    assert '<option value="imap" selected>' in page and 'data-group="failure" class="on"' in page
    assert api.get("/timeline?group=nope").status == 400


# -- abuse: big bodies, slow clients, idle connections ------------------------------------------------------------
def test_a_one_megabyte_body_is_413_and_nothing_is_done(live, api):
    before = snapshot(live)
    r = api.post("/api/units/store/restart", body=b"{" + b" " * (1 << 20) + b"}",
                 headers={"Content-Type": "application/json"})
    assert r.status == 413 and r.json() == {"error": T.TOO_LARGE.format(limit=65536)}
    chunked = raw(live.port, (f"POST /api/units/store/restart HTTP/1.1\r\nHost: x\r\nCookie: {api.cookie}\r\n"
                              f"X-CSRF-Token: {api.csrf}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
                  + b"".join(b"10000\r\n" + b" " * 0x10000 + b"\r\n" for _ in range(16)) + b"0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 413 ")
    assert snapshot(live) == before


def test_a_slow_request_head_gets_408(live):
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as s:
        s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
    assert T.TOO_SLOW.format(seconds=int(console_server.HEAD_TIMEOUT)).encode() in answer
    assert _head(answer)[1]["X-Frame-Options"] == "DENY" and _head(answer)[1]["Content-Security-Policy"] == CSP
    assert console_server.HEAD_TIMEOUT - 1 < time.monotonic() - t0 < console_server.HEAD_TIMEOUT + 5


def test_a_slow_body_gets_408_and_nothing_is_done(live, api):
    before = snapshot(live)
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as s:
        s.sendall((f"POST /api/units/store/restart HTTP/1.1\r\nHost: x\r\nCookie: {api.cookie}\r\n"
                   f"X-CSRF-Token: {api.csrf}\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{{").encode())
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request not received within" in answer
    assert snapshot(live) == before


def _head(answer: bytes) -> tuple[bytes, dict[str, str]]:
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return head[0].encode(), dict(ln.split(": ", 1) for ln in head[1:])


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n", rb"400"),  # TLS on the HTTP port
    (b"NOT A REQUEST\r\n\r\n", rb"400"),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", rb"4(00|31)"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", rb"400"),
])
def test_garbage_is_400_with_the_security_headers(live, request_bytes, status):
    line, headers = _head(raw(live.port, request_bytes))  # aiohttp's own answer: the app never sees it
    assert re.match(rb"HTTP/1\.[01] " + status + rb" ", line), line
    for k, v in SECURITY_HEADERS.items():
        assert headers.get(k) == v, (k, headers)
    assert headers["Server"] == "msgsrv-console" and headers["Cache-Control"] == "no-store"


def test_200_idle_connections_do_not_stop_pages_or_supervision(live, api):
    idle = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", live.port), timeout=30))
        t0 = time.monotonic()
        assert api.get("/api/status").status == 200
        assert time.monotonic() - t0 < 2.0
        fresh_budget(live, api)
        pid = live.pids("imap")[0]
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: (p := live.pids("imap")) and p[0] != pid, timeout=10)
        assert time.monotonic() - t0 < 5.0
        live.wait_running(*STORE)
        # past the head deadline every idle connection is told why it is closed
        idle[0].settimeout(console_server.HEAD_TIMEOUT + 10)
        assert idle[0].recv(4096).startswith(b"HTTP/1.1 408 ")
    finally:
        for s in idle:
            s.close()


def test_connections_past_the_cap_get_503_and_the_console_recovers(live, api):
    held = [socket.create_connection(("127.0.0.1", live.port), timeout=10)
            for _ in range(console_server.MAX_CONNECTIONS)]
    try:
        answer = raw(live.port, b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 ") and T.TOO_MANY.encode() in answer
        assert {k: _head(answer)[1].get(k) for k in SECURITY_HEADERS} == SECURITY_HEADERS
    finally:
        for s in held:
            s.close()
    wait_for(lambda: api.get("/api/status").status == 200, timeout=5)


# -- configuration: off, busy port ------------------------------------------------------------------------
def test_httpport_0_turns_the_console_off(tmp_path_factory):
    off = start_live(tmp_path_factory, builtin=False, **{"local.watcher.httpport": "0"}, wait_console=False)
    try:
        r = off.cli("start-msg")
        assert r.returncode == 0 and "Console:" not in r.stdout
        assert not off.url_file().exists()
        assert not any("console" in ln for ln in off.log_lines())
    finally:
        off.stop()


def test_a_busy_console_port_is_logged_and_supervision_goes_on(tmp_path_factory):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        s = start_live(tmp_path_factory, builtin=False, **{"local.watcher.httpport": str(port)}, wait_console=False)
        try:
            assert any(ln.startswith(T.LISTEN_FAILED.format(host="127.0.0.1", port=port, reason=""))
                       for ln in s.log_lines()), s.log_lines()
            assert not s.url_file().exists()
            r = s.cli("watcher", "status", "--json")
            assert {c["name"]: c["state"] for c in json.loads(r.stdout)["components"]}["imap"] == "RUNNING"
            pid = s.pids("imap")[0]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: (p := s.pids("imap")) and p[0] != pid, timeout=10)
        finally:
            s.stop()


def test_a_stale_link_from_a_killed_watcher_is_withdrawn(tmp_path_factory):
    s = start_live(tmp_path_factory, builtin=False, **{"local.watcher.httpport": "0"}, wait_console=False)
    try:
        s.stop()
        s.url_file().write_text(f"http://127.0.0.1:{free_port()}/?token=old\n")
        r = s.cli("start-msg")
        assert r.returncode == 0 and "Console:" not in r.stdout
        assert not s.url_file().exists()
    finally:
        s.stop()


# -- banners: autorestart off, a unit given up on, HA mode ------------------------------------------------
def test_banners_for_autorestart_off_and_a_unit_given_up(tmp_path_factory):
    s = start_live(tmp_path_factory, builtin=False, **{"local.autorestart": "no"})
    try:
        api = s.session()
        st = api.get("/api/status").json()
        assert [b["level"] for b in st["banners"]] == ["warn"] and "local.autorestart is no" in st["banners"][0]["text"]
        assert "local.autorestart is no" in api.get("/").text
        # a crash with autorestart off: EXITED, with the exit status and time, never STOPPED or dropped
        pid = s.pids("imap")[0]
        t0 = time.time()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: s.state("imap") == "EXITED", timeout=10)
        imap = next(r for r in api.get("/api/status").json()["components"] if r["name"] == "imap")
        assert imap["pids"] == [] and imap["last_exit"]["pid"] == pid
        assert imap["last_exit"]["how"] == "killed by signal 9 (SIGKILL)" and t0 <= imap["last_exit"]["time"] <= time.time()
        assert f"pid {pid} killed by signal 9 (SIGKILL) at " in api.get("/").text
        assert [e["kind"] for e in api.get("/api/timeline?component=imap&group=failure").json()["events"]] \
            == ["not-restarted", "exit"]
        r = api.post("/api/components/imap/start", body=b'{"wait": 30}', headers={"Content-Type": "application/json"})
        assert r.status == 200 and r.json()["action"]["ok"] is True
        r = s.cli("configutil", "-o", "local.autorestart", "-v", "yes")
        assert r.returncode == 0, r.stderr
        for _ in range(3):  # the third failure inside the 600 s window gives up
            s.wait_running(*STORE)  # the whole group: its restart is over
            pid = s.pids("imap")[0]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda pid=pid: pid not in s.pids("imap"), timeout=10)
        wait_for(lambda: s.state("imap") == "FATAL", timeout=15)
        st = api.get("/api/status").json()
        unit = next(u for u in st["units"] if u["name"] == "store")
        assert unit["fatal"] is True and unit["restarts"] == 2
        imap = next(r for r in st["components"] if r["name"] == "imap")
        assert imap["pids"] == [] and imap["last_exit"]["pid"] == pid and imap["restarts"] == 2
        assert imap["reason"] == M.GIVING_UP.format(c="imap", n=3, window=600, units="store imap pop http")
        give_up = api.get("/api/timeline?kind=give-up").json()["events"]
        assert [(e["component"], e["unit"], e["pid"]) for e in give_up] == [("imap", "store", pid)]
        assert any(b["level"] == "error" and b["text"].startswith("Gave up on the store unit") for b in st["banners"])
        page = api.get("/").text
        assert 'class="banner error"' in page and "2 / 2 in 600 s" in page and 'class="unit fatal"' in page
        # the admin fixes the cause and starts it again from the console
        r = api.post("/api/components/imap/start", body=b'{"wait": 30}', headers={"Content-Type": "application/json"})
        assert r.status == 200 and r.json()["action"]["ok"] is True
        assert s.state("imap") == "RUNNING"
    finally:
        s.stop()


def test_ha_mode_banner(tmp_path_factory):
    s = Live(tmp_path_factory.mktemp("console") / "root")
    s.configure(False)
    try:
        r = s.cli("start-msg", "ha")
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.splitlines()[-1].startswith(f"Console: http://127.0.0.1:{s.port}/?token=")
        st = s.session().get("/api/status").json()
        assert st["watcher"]["ha"] is True
        assert [b["level"] for b in st["banners"]] == ["info"] and st["banners"][0]["text"].startswith("HA mode")
    finally:
        s.stop()


def test_the_web_application_is_loaded_only_when_the_console_is_first_used(tmp_path_factory):
    import aiohttp

    parser = next(Path(aiohttp.__file__).parent.glob("_http_parser*.so"), None)
    if parser is None:
        pytest.skip("aiohttp installed without its C parser: nothing to see in the memory map")
    s = start_live(tmp_path_factory, builtin=False)
    try:
        maps = Path(f"/proc/{s.pids('watcher')[0]}/maps")
        assert parser.name not in maps.read_text()  # listening, but nothing loaded yet
        assert s.client().get("/login").status == 200  # the first request waits for the load
        assert parser.name in maps.read_text()
        assert s.session().get("/api/status").status == 200
    finally:
        s.stop()
