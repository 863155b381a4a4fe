// tandem dashboard: polls /api/v1/overview once a second and follows /api/v1/events/stream.
//
// No framework and nothing loaded from elsewhere (see dashboard.rs). The server sends
// counters; rates, windowed latency percentiles and sparklines are computed here from the
// difference between snapshots, so the server keeps no history. Every value from the API is
// put into the page with textContent, never as HTML.
"use strict";

const POLL_MS = 1000;
const HISTORY = 60; // sparkline points (one per poll)
const LATENCY_WINDOW = 10; // snapshots the p50/p99 are computed over
const MAX_EVENTS = 100;
const TOKEN_KEY = "tandem.token";
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let lastSeq = 0; // the last event id seen, for Last-Event-ID
const history = new Map(); // "pool|address" -> {snaps: [{t, total, failures, hist}], rps: [], p99: []}
let bounds = [];
let refreshSoon = null;

// ---------------------------------------------------------------------------------------------
// API access

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function api(path, init) {
  const resp = await fetch(path, Object.assign({ cache: "no-store" }, init || {}, {
    headers: headers(init && init.headers),
  }));
  if (resp.status === 401) {
    askToken();
    throw new Error("the admin token is missing or wrong");
  }
  return resp;
}

function askToken() {
  const form = $("token-form");
  if (form.hidden) {
    form.hidden = false;
    $("token-input").value = "";
    $("token-input").focus();
  }
}

function setupToken() {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token-input").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    $("token-form").hidden = true;
    poll();
  });
  $("token-cancel").addEventListener("click", () => { $("token-form").hidden = true; });
  $("token-button").addEventListener("click", askToken);
}

function showError(msg) {
  const e = $("error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function td(text, cls) { return el("td", cls, text); }

function badge(word, extra) {
  return el("span", "badge s-" + word, extra || word);
}

function fmtRate(x) {
  if (x === null || x === undefined) return "–";
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function fmtMs(x) {
  if (x === null || x === undefined) return "–";
  if (x >= 1000) return (x / 1000).toFixed(2) + " s";
  if (x >= 10) return x.toFixed(0) + " ms";
  if (x >= 1) return x.toFixed(1) + " ms";
  return x.toFixed(2) + " ms";
}

function fmtAgo(iso) {
  if (!iso) return "–";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.floor(s) + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

function fmtUptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  return m + "m " + (s % 60) + "s";
}

function sparkline(values, cls) {
  const w = 48, h = 18;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark " + (cls || ""));
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  const pts = values.filter((v) => v !== null);
  if (pts.length > 1) {
    const max = Math.max.apply(null, pts) || 1;
    const step = w / (HISTORY - 1);
    const off = HISTORY - values.length;
    const coords = [];
    values.forEach((v, i) => {
      if (v === null) return;
      const x = (off + i) * step;
      const y = h - 1 - (v / max) * (h - 3);
      coords.push(x.toFixed(1) + "," + y.toFixed(1));
    });
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", coords.join(" "));
    svg.appendChild(line);
  }
  return svg;
}

// ---------------------------------------------------------------------------------------------
// Rates and percentiles from successive snapshots

function quantile(counts, q) {
  let total = 0;
  for (const c of counts) total += c;
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= rank) return bounds[i];
  }
  return bounds[counts.length - 1];
}

function diffHist(now, then) {
  const out = [];
  for (let i = 0; i < now.length; i++) out.push(now[i] - ((then && then[i]) || 0));
  return out;
}

function track(pool, b, t) {
  const key = pool + "|" + b.address;
  let h = history.get(key);
  if (!h) {
    h = { snaps: [], rps: [], p99: [] };
    history.set(key, h);
  }
  const snap = { t, total: b.total, failures: b.failures, hist: b.latency_histogram || [] };
  const prev = h.snaps[h.snaps.length - 1];
  h.snaps.push(snap);
  if (h.snaps.length > LATENCY_WINDOW + 1) h.snaps.shift();
  let rps = null, eps = null;
  if (prev && t > prev.t && snap.total >= prev.total) {
    const dt = (t - prev.t) / 1000;
    rps = (snap.total - prev.total) / dt;
    eps = (snap.failures - prev.failures) / dt;
  }
  const first = h.snaps[0];
  let p50 = null, p99 = null;
  if (first !== snap) {
    const window = diffHist(snap.hist, first.hist);
    p50 = quantile(window, 0.5);
    p99 = quantile(window, 0.99);
  }
  if (rps !== null) {
    h.rps.push(rps);
    h.p99.push(p99);
    if (h.rps.length > HISTORY) { h.rps.shift(); h.p99.shift(); }
  }
  return { rps, eps, p50, p99, h };
}

// ---------------------------------------------------------------------------------------------
// Rendering

function renderNode(o) {
  $("node").textContent = "v" + o.version + " · up " + fmtUptime(o.uptime_s) +
    " · " + o.pools.length + " pool" + (o.pools.length === 1 ? "" : "s") +
    " · " + o.services.length + " service" + (o.services.length === 1 ? "" : "s");
}

function renderVrrp(list) {
  const body = $("vrrp").querySelector("tbody");
  body.replaceChildren();
  $("vrrp").hidden = list.length === 0;
  $("vrrp-none").hidden = list.length !== 0;
  for (const v of list) {
    const tr = el("tr");
    tr.append(td(v.name), td(v.interface + " · vrid " + v.vrid, "addr"), td(v.virtual_ips.join(", "), "addr"));
    const st = td();
    st.append(badge(v.state));
    tr.append(st, td(v.priority, "num"),
      td(v.state === "master" ? "this node" : (v.master_address || "–"), "addr"),
      td(fmtAgo(v.since)));
    body.append(tr);
  }
}

function actionButton(pool, b, action, label, enabled) {
  const btn = el("button", null, label);
  btn.type = "button";
  btn.dataset.action = action;
  btn.dataset.pool = pool;
  btn.dataset.backend = b.address;
  btn.disabled = !enabled;
  btn.title = label + " " + b.address;
  btn.addEventListener("click", () => act(pool, b.address, action));
  return btn;
}

function renderPools(o, t) {
  const root = $("pools");
  const frag = document.createDocumentFragment();
  for (const p of o.pools) {
    const card = el("section", "pool");
    card.dataset.pool = p.name;
    const head = el("div", "pool-head");
    head.append(el("h3", null, p.name), el("span", "muted", p.scheduler),
      el("span", p.backends_eligible === 0 ? "bad" : "muted",
        p.backends_eligible + " of " + p.backends.length + " eligible"));
    if (p.survives_losing_one !== null && p.survives_losing_one !== undefined) {
      head.append(el("span", "badge " + (p.survives_losing_one ? "s-up" : "s-down"),
        "survives losing 1 backend: " + (p.survives_losing_one ? "yes" : "no")));
    }
    card.append(head);
    const table = el("table", "grid");
    const thead = el("thead");
    const hr = el("tr");
    for (const [label, cls, span] of [["Backend / last check"], ["Health"], ["Admin"], ["Weight", "num"],
      ["Active", "num"], ["Req/s", "num", 2], ["Err/s", "num"], ["p50", "num"], ["p99", "num", 2], [""]]) {
      const th = el("th", cls, label);
      if (span) th.colSpan = span;
      hr.append(th);
    }
    thead.append(hr);
    const body = el("tbody");
    for (const b of p.backends) {
      const r = track(p.name, b, t);
      const tr = el("tr", b.state === "down" ? "row-down" : "");
      tr.dataset.backend = b.address;
      tr.dataset.state = b.state;
      tr.dataset.admin = b.admin_state;
      const addr = td();
      const name = el("span", "addr", b.address);
      addr.append(name);
      if (b.backup) addr.append(el("span", "muted", " backup"));
      const reason = el("span", "reason", b.reason || "not checked yet");
      reason.title = (b.reason || "") + (b.last_check ? " (" + b.last_check + ")" : "");
      addr.append(reason);
      const health = td();
      health.append(badge(b.state));
      if (b.ejected) health.append(" ", badge("ejected"));
      health.title = b.reason || "";
      const admin = td();
      admin.append(badge(b.admin_state));
      const weight = td(b.weight === b.effective_weight ? b.weight : b.weight + " (" + b.effective_weight + ")", "num");
      const rpsSpark = td(null, "spark-cell");
      rpsSpark.append(sparkline(r.h.rps));
      const p99Spark = td(null, "spark-cell");
      p99Spark.append(sparkline(r.h.p99, "lat"));
      const actions = td();
      const box = el("div", "actions");
      box.append(
        actionButton(p.name, b, "drain", "Drain", b.admin_state === "enabled"),
        actionButton(p.name, b, "enable", "Enable", b.admin_state !== "enabled"));
      actions.append(box);
      tr.append(addr, health, admin, weight, td(b.active, "num"), rpsSpark, td(fmtRate(r.rps), "num"),
        td(fmtRate(r.eps), "num"), td(fmtMs(r.p50 !== null ? r.p50 : b.latency_p50_ms), "num"),
        p99Spark, td(fmtMs(r.p99 !== null ? r.p99 : b.latency_p99_ms), "num"), actions);
      body.append(tr);
    }
    table.append(thead, body);
    card.append(table);
    frag.append(card);
  }
  root.replaceChildren(frag);
}

function addEvent(e) {
  const list = $("events");
  const li = el("li");
  li.dataset.seq = e.seq;
  li.dataset.kind = e.kind;
  const time = el("time", null, new Date(e.at).toLocaleTimeString([], { hour12: false }));
  time.dateTime = e.at;
  time.title = e.at;
  li.append(time, el("span", "msg", e.message));
  const kind = e.kind.replace("backend_", "");
  const cls = { up: "up", down: "down", ejected: "ejected", returned: "up", operator: "draining",
    vrrp: "backup", peer_up: "up", peer_down: "down", reload: "backup" }[kind] || "unknown";
  const k = el("span", "kind");
  k.append(badge(cls, kind.replace("_", " ")));
  li.append(k);
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  $("events-none").hidden = true;
}

// ---------------------------------------------------------------------------------------------
// Loops

async function poll() {
  try {
    const resp = await api("/api/v1/overview");
    if (!resp.ok) throw new Error("overview: HTTP " + resp.status);
    const o = await resp.json();
    bounds = o.latency_bucket_upper_ms;
    const t = Date.now();
    renderNode(o);
    renderVrrp(o.vrrp);
    renderPools(o, t);
    showError("");
  } catch (err) {
    showError("Cannot read the node's state: " + err.message);
  }
}

function pollSoon() {
  if (refreshSoon) return;
  refreshSoon = setTimeout(() => { refreshSoon = null; poll(); }, 150);
}

async function act(pool, backend, action) {
  const path = "/api/v1/pools/" + encodeURIComponent(pool) + "/backends/" +
    encodeURIComponent(backend) + "/" + action;
  try {
    const resp = await api(path, { method: "POST" });
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      throw new Error(body.error || "HTTP " + resp.status);
    }
    showError("");
  } catch (err) {
    showError(action + " " + backend + ": " + err.message);
  }
  pollSoon();
}

function setLive(on) {
  const p = $("live");
  p.className = "pill " + (on ? "pill-on" : "pill-off");
  p.textContent = on ? "live" : "reconnecting";
}

function handleBlock(block) {
  let id = null, event = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "id") id = value;
    else if (field === "event") event = value;
    else if (field === "data") data += (data ? "\n" : "") + value;
  }
  if (id !== null && /^\d+$/.test(id)) lastSeq = Number(id);
  if (event === "message" && data) {
    try { addEvent(JSON.parse(data)); } catch (_) { /* not ours: ignore */ }
    pollSoon();
  }
}

// The stream is read with fetch, not EventSource: EventSource cannot send the Authorization
// header. Reconnects resume with Last-Event-ID, so no event is shown twice or skipped.
async function follow() {
  for (;;) {
    try {
      const resp = await api("/api/v1/events/stream", { headers: { "Last-Event-ID": String(lastSeq) } });
      if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
      setLive(true);
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          handleBlock(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (_) { /* reconnect below */ }
    setLive(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

setupToken();
poll();
setInterval(poll, POLL_MS);
follow();
