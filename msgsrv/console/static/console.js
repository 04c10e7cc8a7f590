// msgsrv console: live updates and actions. No framework, no inline script (the CSP forbids it).
"use strict";

const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
const PAGE = document.body.dataset.page;
const STATUS_EVERY = 1000;   // ms between two status polls (overview)
const PROBES_EVERY = 10000;
const LOG_EVERY = 1000;
const PLOTS_EVERY = 30000;
const TIMELINE_EVERY = 2000;

class LoggedOut extends Error {}

async function api(path, options = {}) {
  const opts = { credentials: "same-origin", headers: {}, ...options };
  if (opts.method && opts.method !== "GET") opts.headers["X-CSRF-Token"] = CSRF;
  const r = await fetch(path, opts);
  if (r.status === 401) {
    window.location.assign("/login");
    throw new LoggedOut();
  }
  return r;
}

async function json(path, options) {
  const r = await api(path, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function $(sel, root = document) { return root.querySelector(sel); }
function $$(sel, root = document) { return Array.from(root.querySelectorAll(sel)); }

function uptime(s) {
  if (s === null || s === undefined) return "–";
  s = Math.floor(s);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const p = (n) => String(n).padStart(2, "0");
  return (d ? d + "d " : "") + p(h) + ":" + p(m) + ":" + p(s);
}

function num(v) { return Number.isInteger(v) ? String(v) : String(+v.toFixed(3)); }

function secs(v) {
  if (v < 1) { const ms = v * 1000; return (ms >= 0.01 ? +ms.toPrecision(3) : 0) + " ms"; }
  return +v.toPrecision(3) + " s";
}

function clock(ts) {
  const d = new Date(ts * 1000);
  return d.toTimeString().slice(0, 8);
}

function lastExit(e) {
  return e ? `pid ${e.pid} ${e.how} at ${clock(e.time)}` : "–";
}

function setLive(ok, text) {
  const el = $("#live");
  if (!el) return;
  el.classList.toggle("stale", !ok);
  $("#live-text").textContent = text || (ok ? "live" : "reconnecting…");
}

function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }

function banners(list) {
  const box = $("#banners");
  if (!box) return;
  const html = list.map((b) => b.level + "\u0000" + b.text).join("\u0001");
  if (box.dataset.last === html) return;
  box.dataset.last = html;
  box.replaceChildren(...list.map((b) => {
    const div = document.createElement("div");
    div.className = "banner " + b.level;
    div.textContent = b.text;
    return div;
  }));
}

// -- the overview ------------------------------------------------------------------------------
function applyStatus(st) {
  const w = st.watcher;
  banners(st.banners);
  setText($("#watcher-pill"), "watcher " + w.pid + (w.ha ? " · HA" : ""));
  const busy = $("#busy");
  if (busy) busy.hidden = !w.busy;
  let running = 0, enabled = 0;
  for (const c of st.components) {
    const nf = c.frozen.length;
    if (c.enabled) { enabled++; if (c.state === "RUNNING" && nf < c.pids.length) running++; }
    const row = $(`tr[data-component="${c.name}"]`);
    if (!row) continue;
    const pids = c.pids.join(" ") || "–";
    const stateEl = $('[data-f="state"]', row);
    const changed = stateEl.textContent !== c.state || $('[data-f="pids"]', row).textContent !== pids;
    setText(stateEl, c.state);
    stateEl.className = "state s-" + c.state;
    setText($('[data-f="pids"]', row), pids);
    setText($('[data-f="uptime"]', row), uptime(c.uptime));
    setText($('[data-f="last_exit"]', row), lastExit(c.last_exit));
    const why = $('[data-f="reason"]', row);
    const whyText = c.reason || c.frozen.map((f) => f.why).join("; ");
    setText(why, whyText);
    why.hidden = !whyText;
    const frozen = $('[data-f="frozen"]', row);
    if (frozen) {
      frozen.hidden = nf === 0;
      setText(frozen, nf >= c.pids.length ? "frozen" : `${nf} of ${c.pids.length} frozen`);
    }
    row.classList.toggle("disabled", !c.enabled);
    if (changed) { row.classList.remove("changed"); void row.offsetWidth; row.classList.add("changed"); }
    const stop = $('button[data-action="stop"]', row), start = $('button[data-action="start"]', row);
    if (stop && !stop.classList.contains("running")) stop.disabled = c.pids.length === 0;
    if (start && !start.classList.contains("running")) start.disabled = c.pids.length > 0 || !c.enabled;
  }
  for (const u of st.units) {
    const body = $(`tbody[data-unit="${u.name}"]`);
    if (!body) continue;
    body.classList.toggle("fatal", u.fatal);
    const restart = $('button[data-action="restart"]', body);
    if (restart && !restart.classList.contains("running")) restart.disabled = !u.enabled;
    setText($('[data-f="restarts"]', body), `${u.restarts} / ${w.limit} in ${num(w.window)} s`);
  }
  const t = $("#t-running");
  if (t) {
    t.firstChild.textContent = running + " ";
    setText($(".of", t), "/ " + enabled);
  }
  setText($("#t-restarts"), String(st.units.reduce((a, u) => a + u.restarts, 0)));
  setText($("#t-autorestart"), w.autorestart ? "on" : "off");
}

async function pollStatus() {
  try {
    applyStatus(await json("/api/status"));
    setLive(true);
  } catch (e) {
    if (e instanceof LoggedOut) return;
    setLive(false);
  }
  setTimeout(pollStatus, STATUS_EVERY);
}

function applyProbes(p) {
  const body = $("#probes tbody");
  if (!body) return;
  let newest = 0, bad = 0, n = 0;
  const rows = p.services.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.service = s.service;
    const cells = [[s.service, ""]];
    if (s.last) {
      n++; newest = Math.max(newest, s.last.ts); if (!s.last.ok) bad++;
      cells.push([secs(s.last.value), "mono right"], [null, ""], [clock(s.last.ts), "mono"]);
    } else {
      cells.push(["–", "right muted"], ["no result", "muted"], ["", ""]);
    }
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      if (cls) td.className = cls;
      if (text === null) {
        const b = document.createElement("span");
        b.className = "result r-" + s.last.status;
        b.textContent = s.last.status.toUpperCase();
        td.appendChild(b);
      } else td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  });
  if (rows.length) body.replaceChildren(...rows);
  if (newest) {
    setText($("#t-probe"), clock(newest));
    setText($("#t-probe-note"), `${bad} of ${n} services unhealthy`);
  }
}

async function pollProbes() {
  try { applyProbes(await json("/api/probes")); } catch (e) { if (e instanceof LoggedOut) return; }
  setTimeout(pollProbes, PROBES_EVERY);
}

// -- actions -----------------------------------------------------------------------------------
const QUESTIONS = {
  restart: (b) => `Restart the ${b.dataset.unit} unit now? Every running member is stopped and started again.`,
  stop: (b) => `Stop ${b.dataset.component}? It stays stopped until you start it again.`,
};

function actionPath(b) {
  const a = b.dataset.action;
  if (a === "restart") return `/api/units/${encodeURIComponent(b.dataset.unit)}/restart`;
  if (a === "probe") return "/api/probe";
  return `/api/components/${encodeURIComponent(b.dataset.component)}/${a}`;
}

function showAction(a) {
  const pre = $("#activity-lines");
  if (!pre) return;
  setText($("#activity-title"), `${a.kind} ${a.target}` + (a.done ? (a.ok ? " · done" : " · failed") : " · running…"));
  const lines = a.lines.slice();
  if (a.partial) lines.push(a.partial);
  if (a.done && !a.ok && a.error) lines.push("error: " + a.error);
  pre.textContent = lines.join("\n");
  pre.scrollTop = pre.scrollHeight;
}

function follow(action, button) {
  let shown = { ...action, lines: [] };
  const es = new EventSource(`/api/actions/${encodeURIComponent(action.id)}/events`);
  const finish = () => {
    es.close();
    if (button) { button.classList.remove("running"); button.disabled = false; }
    json("/api/status").then(applyStatus).catch(() => {});
  };
  es.onmessage = (ev) => {
    const a = JSON.parse(ev.data);
    shown = { ...a, lines: shown.lines.concat(a.lines) };
    showAction(shown);
  };
  es.addEventListener("end", finish);
  es.onerror = () => {
    // the stream ended or broke: read the action once, to show how it ended
    json(`/api/actions/${encodeURIComponent(action.id)}`).then(showAction).catch(() => {}).finally(finish);
  };
}

async function act(button) {
  const ask = QUESTIONS[button.dataset.action];
  if (ask && !window.confirm(ask(button))) return;
  button.classList.add("running");
  button.disabled = true;
  try {
    const r = await api(actionPath(button), { method: "POST" });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    showAction(body.action);
    follow(body.action, button);
  } catch (e) {
    if (e instanceof LoggedOut) return;
    button.classList.remove("running");
    button.disabled = false;
    showAction({ kind: button.dataset.action, target: button.dataset.unit || button.dataset.component || "",
                 lines: [], done: true, ok: false, error: e.message });
  }
}

// -- response times ------------------------------------------------------------------------------
async function refreshPlots() {
  const box = $(".plots");
  const rng = box ? box.dataset.range : "hour";
  for (const card of $$(".plotcard")) {
    try {
      const r = await api(`/plot/${encodeURIComponent(card.dataset.series)}.svg?range=${rng}`);
      if (!r.ok) continue;
      const doc = new DOMParser().parseFromString(await r.text(), "image/svg+xml");
      const svg = doc.documentElement;
      if (svg.nodeName !== "svg") continue;
      $(".svgbox", card).replaceChildren(document.importNode(svg, true));
    } catch (e) { if (e instanceof LoggedOut) return; }
  }
  setTimeout(refreshPlots, PLOTS_EVERY);
}

// -- logs ----------------------------------------------------------------------------------------
const MAX_LOG_LINES = 5000;

async function followLog(pre, offset) {
  const follow = $("#log-follow");
  if (follow && !follow.checked) { setTimeout(() => followLog(pre, offset), LOG_EVERY); return; }
  const q = new URLSearchParams({ name: pre.dataset.name });
  if (offset !== null) q.set("offset", offset);
  let next = offset;
  try {
    const got = await json("/api/log?" + q);
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    if (got.reset || offset === null) pre.textContent = "";
    if (got.lines.length) {
      pre.appendChild(document.createTextNode(got.lines.join("\n") + "\n"));
      while (pre.childNodes.length > 1 && pre.textContent.length > MAX_LOG_LINES * 120) pre.removeChild(pre.firstChild);
    }
    if (atBottom || offset === null) pre.scrollTop = pre.scrollHeight;
    next = got.offset;
    setLive(true);
  } catch (e) {
    if (e instanceof LoggedOut) return;
    setLive(false);
  }
  setTimeout(() => followLog(pre, next), LOG_EVERY);
}

// -- timeline ------------------------------------------------------------------------------------
function stamp(ts) {
  const d = new Date(ts * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${d.toTimeString().slice(0, 8)}`;
}

function timelineQuery() {
  const table = $("#timeline");
  const q = new URLSearchParams({ limit: "200" });
  if (table.dataset.group) q.set("group", table.dataset.group);
  if (table.dataset.component) q.set("component", table.dataset.component);
  return q;
}

function timelineRow(e) {
  const tr = document.createElement("tr");
  tr.className = "ev-" + e.kind + " g-" + e.group;
  tr.dataset.kind = e.kind;
  tr.dataset.component = e.component || "";
  tr.dataset.pid = e.pid ? String(e.pid) : "";
  const cells = [[stamp(e.t), "mono"], [null, ""], [e.component || "", ""], [e.unit || "", ""],
                 [e.pid ? String(e.pid) : "", "mono"], [e.detail || "", ""], [e.by || "", "muted"]];
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text === null) {
      const k = document.createElement("span");
      k.className = "kind k-" + e.kind;
      k.textContent = e.kind;
      td.appendChild(k);
    } else td.textContent = text;
    tr.appendChild(td);
  }
  return tr;
}

function applyTimeline(tl) {
  const body = $("#timeline tbody");
  // redrawn only when what it shows changed (newest record, count, filter)
  const sig = [timelineQuery().toString(), tl.count, tl.matched,
               tl.events.length ? tl.events[0].t + tl.events[0].kind : ""].join("|");
  if (body.dataset.sig === sig) return;
  body.dataset.sig = sig;
  if (tl.events.length) body.replaceChildren(...tl.events.map(timelineRow));
  else {
    const tr = document.createElement("tr"), td = document.createElement("td");
    tr.className = "empty"; td.colSpan = 7; td.className = "muted"; td.textContent = "No records match.";
    tr.appendChild(td); body.replaceChildren(tr);
  }
  const more = $("#timeline-more");
  if (more) more.hidden = !tl.truncated;
}

let timelineTimer = null;

async function pollTimeline() {
  clearTimeout(timelineTimer);
  const q = timelineQuery().toString();
  try {
    const tl = await json("/api/timeline?" + q);
    if (q !== timelineQuery().toString()) return;  // the filter changed meanwhile: its own poll goes on
    applyTimeline(tl);
    setLive(true);
  } catch (e) {
    if (e instanceof LoggedOut) return;
    setLive(false);
  }
  timelineTimer = setTimeout(pollTimeline, TIMELINE_EVERY);
}

function timelineFilter(group, component) {
  const table = $("#timeline");
  if (group !== null) table.dataset.group = group;
  if (component !== null) table.dataset.component = component;
  for (const a of $$("#timeline-filter a")) a.classList.toggle("on", a.dataset.group === table.dataset.group);
  const q = new URLSearchParams();
  if (table.dataset.group) q.set("group", table.dataset.group);
  if (table.dataset.component) q.set("component", table.dataset.component);
  history.replaceState(null, "", "/timeline" + (q.toString() ? "?" + q : ""));
  pollTimeline();
}

// -- wiring --------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  const logout = $("#logout");
  if (logout) logout.addEventListener("click", async () => {
    try { await api("/logout", { method: "POST" }); } catch (e) { /* logged out either way */ }
    window.location.assign("/login");
  });
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (b && !b.disabled) act(b);
  });
  if (PAGE === "overview") {
    setTimeout(pollStatus, STATUS_EVERY);
    setTimeout(pollProbes, PROBES_EVERY);
  } else if (PAGE === "plots") {
    setTimeout(refreshPlots, PLOTS_EVERY);
  } else if (PAGE === "logs") {
    const sel = $("#log-name");
    sel.addEventListener("change", () => window.location.assign("/logs?name=" + encodeURIComponent(sel.value)));
    followLog($("#log-lines"), null);
  } else if (PAGE === "timeline") {
    $("#timeline-filter").addEventListener("click", (ev) => {
      const a = ev.target.closest("a[data-group]");
      if (!a) return;
      ev.preventDefault();
      timelineFilter(a.dataset.group, null);
    });
    $("#timeline-component").addEventListener("change", (ev) => timelineFilter(null, ev.target.value));
    timelineTimer = setTimeout(pollTimeline, TIMELINE_EVERY);
  }
});
