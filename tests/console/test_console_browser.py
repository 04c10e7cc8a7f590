"""The console in a real headless Chromium (Debian's chromium, driven by Playwright), against a
watcher supervising the built-in servers.

Screenshots of the overview and of the plots are saved under tests/artifacts/ (not committed: the
directory ignores itself). The tests run in file order on one suite: log in, list, kill -9 imapd (the
overview, then the timeline), restart the store group, probe and plot.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import pytest
from playwright import sync_api  # a test extra

from msgsrv.components import START_ORDER
from tests.conftest import wait_for
from tests.console.conftest import STORE, start_live

CHROMIUM = os.environ.get("MSGSRV_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
VIEWPORT = {"width": 1360, "height": 900}
UI_TIMEOUT = 20_000  # ms

# a real browser from a Debian package: under CI=true its absence fails the run (tests/conftest.py)
pytestmark = pytest.mark.integration


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    ignore = ARTIFACTS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# screenshots from the browser tests (tests/console); never committed\n*\n")
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    s = start_live(tmp_path_factory, builtin=True)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (scripts/ci-deps.sh installs it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(UI_TIMEOUT)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context, live):
    """A logged-in page on the overview; confirmation dialogs are accepted; CSP reports collected."""
    pg = context.new_page()
    pg.on("dialog", lambda d: d.accept())
    pg.csp_errors = []
    pg.on("console", lambda m: pg.csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    pg.goto(live.url_file().read_text().strip())
    sync_api.expect(pg.locator("table#components")).to_be_visible()
    yield pg
    assert pg.csp_errors == []


def cell(page, component: str, field: str):
    return page.locator(f'tr[data-component="{component}"] [data-f="{field}"]')


def test_page_without_token_shows_the_login_message_and_no_data(context, live):
    pg = context.new_page()
    response = pg.goto(f"http://127.0.0.1:{live.port}/")
    assert response.status == 401
    sync_api.expect(pg.locator("#login-message")).to_have_text("You are not logged in.")
    html = pg.content()
    assert "components" not in pg.locator("main").inner_html()
    for c in STORE:
        assert str(live.pids(c)[0]) not in html
    assert "RUNNING" not in html and "imapd" not in html
    bad = pg.goto(f"http://127.0.0.1:{live.port}/?token=wrong")
    assert bad.status == 401
    sync_api.expect(pg.locator("#login-message")).to_have_text("wrong token")
    assert context.cookies() == []


def test_token_link_logs_in_and_the_overview_lists_every_component(page, context, live):
    assert page.url == f"http://127.0.0.1:{live.port}/"  # the token left the address bar
    cookies = context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("msgsrv_console", True, "Strict")]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read the session
    rows = page.locator("table#components tr[data-component]")
    listed = rows.evaluate_all("rs => rs.map(r => r.dataset.component)")
    assert sorted(listed) == sorted(START_ORDER)
    assert listed[1:5] == ["store", "imap", "pop", "http"]  # the store group together, in start order
    for c in STORE:
        sync_api.expect(cell(page, c, "state")).to_have_text("RUNNING")
        sync_api.expect(cell(page, c, "pids")).to_have_text(" ".join(map(str, live.pids(c))))
    sync_api.expect(cell(page, "mmp", "state")).to_have_text("STOPPED")  # off by default, listed all the same
    sync_api.expect(page.locator('tbody[data-unit="store"] [data-f="restarts"]')).to_have_text("0 / 2 in 600 s")
    sync_api.expect(page.locator("#live")).not_to_have_class(re.compile("stale"))
    screenshot(page, "console-overview.png")


def test_a_frozen_pop_worker_is_marked_and_unmarked_without_a_reload(page, live):
    """SIGSTOP one of pop's two workers: its row says `1 of 2 frozen` and why (the pid, how to
    continue it), in place; SIGCONT and the mark goes. The overview still counts pop running: its
    other worker serves."""
    from msgsrv import messages as M

    live.wait_running(*STORE)
    worker = live.pids("pop")[1]
    tag = cell(page, "pop", "frozen")
    sync_api.expect(tag).to_be_hidden()
    page.evaluate("window.sameDocument = true")
    os.kill(worker, signal.SIGSTOP)
    try:
        sync_api.expect(tag).to_be_visible()
        sync_api.expect(tag).to_have_text("1 of 2 frozen")
        sync_api.expect(cell(page, "pop", "reason")).to_have_text(M.FROZEN_STOPPED.format(pid=worker))
        sync_api.expect(cell(page, "pop", "state")).to_have_text("RUNNING")
        screenshot(page, "console-frozen.png")
    finally:
        os.kill(worker, signal.SIGCONT)
    sync_api.expect(tag).to_be_hidden()
    sync_api.expect(cell(page, "pop", "reason")).to_be_hidden()
    assert page.evaluate("window.sameDocument") is True  # updated in place, never reloaded


def test_kill_imapd_and_its_row_changes_and_comes_back_without_a_reload(page, live):
    old = live.pids("imap")[0]
    sync_api.expect(cell(page, "imap", "pids")).to_have_text(str(old))
    page.evaluate("window.sameDocument = true")
    os.kill(old, signal.SIGKILL)
    page.wait_for_function(
        """old => {
            const row = document.querySelector('tr[data-component="imap"]');
            const pids = row.querySelector('[data-f="pids"]').textContent;
            return pids !== String(old) && pids !== '–'
                && row.querySelector('[data-f="state"]').textContent === 'RUNNING';
        }""", arg=old)
    assert page.evaluate("window.sameDocument") is True  # updated in place, never reloaded
    new = wait_for(lambda: (p := live.pids("imap")) and p[0] != old and p, timeout=10)
    sync_api.expect(cell(page, "imap", "pids")).to_have_text(str(new[0]))
    sync_api.expect(page.locator('tbody[data-unit="store"] [data-f="restarts"]')).to_have_text("1 / 2 in 600 s")
    sync_api.expect(cell(page, "imap", "last_exit")).to_contain_text(f"pid {old} killed by signal 9 (SIGKILL) at ")
    assert any(f"Watched 'imapd' process {old} exited abnormally" in ln for ln in live.log_lines())


def test_kill_imapd_and_the_crash_and_its_restart_appear_in_the_timeline_without_a_reload(page, live):
    live.wait_running(*STORE)
    page.goto(f"http://127.0.0.1:{live.port}/timeline")
    rows = page.locator("#timeline tbody tr")
    sync_api.expect(rows.first).to_be_visible()
    page.evaluate("window.sameDocument = true")
    old = live.pids("imap")[0]
    os.kill(old, signal.SIGKILL)
    crash = page.locator(f'#timeline tr[data-kind="exit"][data-component="imap"][data-pid="{old}"]')
    sync_api.expect(crash).to_have_count(1)
    sync_api.expect(crash).to_contain_text(f"Watched 'imapd' process {old} exited abnormally (killed by signal 9")
    new = wait_for(lambda: (p := live.pids("imap")) and p[0] != old and p, timeout=20)[0]
    started = page.locator(f'#timeline tr[data-kind="started"][data-component="imap"][data-pid="{new}"]')
    sync_api.expect(started).to_have_count(1)
    sync_api.expect(page.locator('#timeline tr[data-kind="restart-done"][data-component="imap"]')).not_to_have_count(0)
    order = rows.evaluate_all("rs => rs.map(r => r.dataset.kind + ':' + r.dataset.pid)")
    assert order.index(f"started:{new}") < order.index(f"exit:{old}")  # newest first
    assert page.evaluate("window.sameDocument") is True  # it came in by itself, no reload
    screenshot(page, "console-timeline.png")
    page.click('#timeline-filter a[data-group="failure"]')  # failures only, still without a reload
    sync_api.expect(page.locator('#timeline tr[data-kind="started"]')).to_have_count(0)
    sync_api.expect(crash).to_have_count(1)
    assert page.url == f"http://127.0.0.1:{live.port}/timeline?group=failure"
    assert page.evaluate("window.sameDocument") is True


def test_restart_button_on_the_store_group_shows_progress_and_new_pids(page, live):
    live.wait_running(*STORE)
    old = {c: live.pids(c) for c in STORE}
    for c in STORE:
        sync_api.expect(cell(page, c, "pids")).to_have_text(" ".join(map(str, old[c])))
    page.click('button[data-action="restart"][data-unit="store"]')
    activity = page.locator("#activity-lines")
    sync_api.expect(activity).to_contain_text("Received request to restart:  store imap pop http")
    sync_api.expect(activity).to_contain_text(re.compile(r"Starting http server \.+ \d+"))
    sync_api.expect(page.locator("#activity-title")).to_have_text("restart store · done")
    for c in STORE:
        new = wait_for(lambda c=c: (p := live.pids(c)) and not set(p) & set(old[c]) and p, timeout=10)
        sync_api.expect(cell(page, c, "pids")).to_have_text(" ".join(map(str, new)))
        sync_api.expect(cell(page, c, "state")).to_have_text("RUNNING")
    assert "Received request to restart:  store imap pop http (console, 127.0.0.1)" in live.log_lines()


def test_plot_shows_points_after_a_few_msprobe_runs(page, live):
    button = page.locator('button[data-action="probe"]')
    for _ in range(3):
        button.click()
        sync_api.expect(page.locator("#activity-title")).to_have_text("probe msprobe · done", timeout=60_000)
        sync_api.expect(page.locator("#activity-lines")).to_contain_text("msprobe: every service answered")
        sync_api.expect(button).to_be_enabled()
    page.goto(f"http://127.0.0.1:{live.port}/plots")
    svg = page.locator('svg[data-series="imap"]')
    sync_api.expect(svg).to_be_visible()
    assert svg.locator("circle.pt").count() >= 3
    assert svg.locator("line.warn-line").count() == 1 and svg.locator("line.timeout-line").count() == 1
    assert page.locator("svg.plot").count() >= len(STORE)
    screenshot(page, "console-plots.png")
    assert "Received request to run msprobe (console, 127.0.0.1)" in live.log_lines()


def test_log_page_follows_the_watcher_log_live(page, live):
    page.goto(f"http://127.0.0.1:{live.port}/logs?name=watcher")
    lines = page.locator("#log-lines")
    sync_api.expect(lines).to_contain_text("watcher process")
    live.wait_running(*STORE)
    pid = live.pids("http")[0]
    r = live.cli("stop-msg", "http")
    assert r.returncode == 0, r.stderr
    sync_api.expect(lines).to_contain_text(re.compile(rf"Stopping http server {pid} \.+ done"))
    assert live.cli("start-msg", "http").returncode == 0
    new = live.pids("http")[0]
    sync_api.expect(lines).to_contain_text(re.compile(rf"Starting http server \.+ {new}"))
