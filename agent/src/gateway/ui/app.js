// fogd's status page: reads /fogd/status, redraws, and refreshes when /fogd/events says
// something happened (and every 10 s regardless). Everything shown is set as text, never as
// HTML: job errors and logs are whatever a script printed.
"use strict";

const $ = (sel, root) => (root || document).querySelector(sel);
const STATES = ["queued", "running", "delegated", "succeeded", "failed", "timed_out", "cancelled"];
let status = null;
let refreshes = 0;
let pending = null;
let historyAt = {};

function text(el, v) { el.textContent = v === null || v === undefined ? "" : String(v); }
function cell(tr, v, cls) { const td = document.createElement("td"); text(td, v); if (cls) td.className = cls; tr.appendChild(td); return td; }
function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function short(s) { return s.length > 160 ? s.slice(0, 157) + "…" : s; }
function pct(x) { return (Math.round(x * 1000) / 10) + " %"; }

async function getJson(url) {
  const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

function showView() {
  const view = (location.hash || "#cameras").slice(1);
  document.querySelectorAll(".view").forEach(v => { v.hidden = v.id !== "view-" + view; });
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.dataset.view === view));
}

function drawHealth(s) {
  text($("#node"), s.node + " · " + s.version);
  const h = $("#health");
  h.className = "badge " + (s.health.ok ? "ok" : "bad");
  text(h, s.health.ok ? "healthy" : "needs attention");
  const p = $("#problems");
  p.replaceChildren();
  s.health.problems.forEach(m => { const d = document.createElement("div"); text(d, short(m)); d.title = m; p.appendChild(d); });
  p.hidden = s.health.problems.length === 0;
}

function drawCameras(s) {
  const box = $("#cameras");
  $("#no-cameras").hidden = s.cameras.length > 0;
  const seen = new Set();
  for (const c of s.cameras) {
    seen.add(c.camera);
    let card = box.querySelector(`[data-camera="${CSS.escape(c.camera)}"]`);
    if (!card) {
      card = $("#camera-card").content.firstElementChild.cloneNode(true);
      card.dataset.camera = c.camera;
      box.appendChild(card);
      zoneEditor(card, c.camera);
    }
    const last = c.last || null;
    text($(".name", card), c.camera);
    const v = $(".verdict", card);
    const verdict = last ? last.verdict : "none";
    v.className = "verdict badge " + verdict;
    v.dataset.verdict = verdict;
    text(v, { safe: "Safe", warning: "Warning", danger: "Danger", not_judged: "Not judged", none: "No verdict yet" }[verdict] || verdict);
    text($(".faces", card), last ? last.faces : "–");
    text($(".masked", card), last ? last.masked : "–");
    text($(".unmasked", card), last ? last.unmasked : "–");
    text($(".share", card), last ? pct(last.no_mask_share) : "–");
    text($(".frames", card), c.frames);
    $(".frames", card).dataset.value = c.frames;
    text($(".seen", card), ago(c.last_seen_ms));
    const img = $("img", card);
    if (c.snapshot_ms) {
      const src = "/fogd/cameras/" + encodeURIComponent(c.camera) + "/snapshot.jpg?t=" + c.snapshot_ms;
      if (img.getAttribute("src") !== src) img.setAttribute("src", src);
      img.hidden = false;
      $(".nosnap", card).hidden = true;
    } else {
      img.hidden = true;
    }
    // Zones are drawn over a snapshot: without one there is nothing to draw on.
    $(".zones", card).style.display = img.hidden ? "none" : "";
    $(".zone-edit", card).disabled = img.hidden;
    // The chart is refetched when the camera has a new verdict.
    const key = last ? last.time_ms : 0;
    if (historyAt[c.camera] !== key) {
      historyAt[c.camera] = key;
      drawChart(card, c.camera);
    }
  }
  box.querySelectorAll("[data-camera]").forEach(el => { if (!seen.has(el.dataset.camera)) el.remove(); });
}

// Privacy zones: shown over the latest snapshot, drawn there by clicking corners, saved through
// /fogd/cameras/<camera>/zones (which checks them: a refused list comes back as a message).
const SVGNS = "http://www.w3.org/2000/svg";
const zonesOf = {};
let editing = null;

function zonesUrl(camera) { return "/fogd/cameras/" + encodeURIComponent(camera) + "/zones"; }
function cardOf(camera) { return [...document.querySelectorAll("#cameras [data-camera]")].find(c => c.dataset.camera === camera); }

async function loadZones(camera) {
  try { zonesOf[camera] = await getJson(zonesUrl(camera)); } catch (e) { return; }
  const card = cardOf(camera);
  if (card) drawZones(card, camera);
}

function drawZones(card, camera) {
  const svg = $(".zones", card);
  svg.replaceChildren();
  const mine = editing && editing.camera === camera;
  const info = zonesOf[camera] || { zones: [], source: "none" };
  const poly = (pts, cls) => {
    const el = document.createElementNS(SVGNS, pts.length >= 3 ? "polygon" : "polyline");
    el.setAttribute("class", cls);
    el.setAttribute("points", pts.map(p => p[0] + "," + p[1]).join(" "));
    svg.appendChild(el);
  };
  (mine ? editing.zones : info.zones).forEach(z => poly(z.points, "zone"));
  if (mine && editing.current.length) poly(editing.current, "zone drawing");
  svg.classList.toggle("editing", !!mine);
  text($(".zone-info", card), mine
    ? "Click the picture to add corners; Finish zone closes one. " + editing.zones.length + " zone(s)."
    : (info.zones.length ? info.zones.length + " privacy zone(s), from " + info.source : "no privacy zones"));
  $(".zone-edit", card).hidden = !!mine;
  $(".zone-tools", card).hidden = !mine;
  $(".zone-reset", card).hidden = info.source !== "api";
}

function zoneEditor(card, camera) {
  const svg = $(".zones", card);
  const round = v => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
  const finish = () => {
    if (editing.current.length >= 3) editing.zones.push({ name: "zone " + (editing.zones.length + 1), points: editing.current });
    editing.current = [];
  };
  const send = async (method, body) => {
    const r = await fetch(zonesUrl(camera), {
      method, credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const reply = await r.json().catch(() => ({}));
    if (!r.ok) { text($(".zone-error", card), reply.error || ("HTTP " + r.status)); return; }
    text($(".zone-error", card), "");
    zonesOf[camera] = reply;
    editing = null;
    drawZones(card, camera);
  };
  svg.addEventListener("click", ev => {
    if (!editing || editing.camera !== camera) return;
    const r = svg.getBoundingClientRect();
    editing.current.push([round((ev.clientX - r.left) / r.width), round((ev.clientY - r.top) / r.height)]);
    drawZones(card, camera);
  });
  const on = (cls, f) => $(cls, card).addEventListener("click", () => { f(); drawZones(card, camera); });
  on(".zone-edit", () => {
    const now = (zonesOf[camera] || { zones: [] }).zones;
    editing = { camera, zones: now.map(z => ({ name: z.name, points: z.points.slice() })), current: [] };
  });
  on(".zone-finish", finish);
  on(".zone-undo", () => { if (editing.current.length) editing.current.pop(); else editing.zones.pop(); });
  on(".zone-clear", () => { editing.zones = []; editing.current = []; });
  on(".zone-cancel", () => { editing = null; text($(".zone-error", card), ""); });
  // No zones left: back to fogd.yaml's (the API refuses an empty list).
  $(".zone-save", card).addEventListener("click", () => {
    finish();
    if (editing.zones.length === 0) send("DELETE");
    else send("PUT", { zones: editing.zones.map(z => ({ name: z.name, points: z.points })) });
  });
  $(".zone-reset", card).addEventListener("click", () => send("DELETE"));
  loadZones(camera);
}

async function drawChart(card, camera) {
  const svg = $(".chart", card);
  let h;
  try { h = await getJson("/fogd/cameras/" + encodeURIComponent(camera) + "/history?hours=6"); } catch (e) { return; }
  const pts = h.points;
  svg.replaceChildren();
  text($(".span", card), pts.length + " frames in the last " + h.hours + " h");
  if (pts.length === 0) return;
  // The window shrinks to the history there is (a camera added an hour ago fills the chart),
  // 10 s at least.
  const t1 = Date.now();
  const span = Math.max(t1 - pts[0].time_ms, 10e3) * 1.05;
  const t0 = Math.max(t1 - h.hours * 3600e3, t1 - span);
  const maxFaces = Math.max(1, ...pts.map(p => p.faces));
  const x = t => ((t - t0) / (t1 - t0)) * 300;
  const line = (cls, y) => {
    const pl = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    pl.setAttribute("class", cls);
    pl.setAttribute("points", pts.map(p => x(p.time_ms).toFixed(1) + "," + y(p).toFixed(1)).join(" "));
    svg.appendChild(pl);
  };
  line("faces", p => 86 - (p.faces / maxFaces) * 80);
  line("share", p => 86 - p.no_mask_share * 80);
}

function drawJobs(s) {
  const tb = $("#services tbody");
  tb.replaceChildren();
  for (const svc of s.services) {
    const tr = document.createElement("tr");
    tr.dataset.service = svc.service;
    cell(tr, svc.service);
    for (const st of STATES) {
      const td = cell(tr, svc.states[st] || 0, "num state-" + st);
      td.dataset.state = st;
    }
    tb.appendChild(tr);
  }
  const jb = $("#jobs tbody");
  jb.replaceChildren();
  for (const j of s.jobs) {
    const tr = document.createElement("tr");
    tr.className = "clickable";
    tr.dataset.job = j.job;
    cell(tr, j.job);
    cell(tr, j.service);
    cell(tr, j.state + (j.error ? ": " + j.error : ""), "state-" + j.state);
    cell(tr, j.ran_on);
    cell(tr, j.key);
    cell(tr, j.finished_ms ? ((j.finished_ms - j.created_ms) / 1000).toFixed(1) + " s" : "", "num");
    tr.addEventListener("click", () => showLog(j.service, j.job));
    jb.appendChild(tr);
  }
}

async function showLog(service, job) {
  text($("#log-job"), job);
  $("#log-panel").hidden = false;
  try {
    const l = await getJson("/fogd/logs/" + encodeURIComponent(service) + "/" + encodeURIComponent(job));
    text($("#log"), (l.truncated ? "[… earlier lines cut]\n" : "") + (l.log || "(empty log)"));
  } catch (e) {
    text($("#log"), String(e));
  }
}

function drawOutbox(s) {
  const o = s.outbox;
  text($("#outbox-backlog"), o.backlog);
  text($("#outbox-bytes"), bytes(o.backlog_bytes));
  text($("#outbox-uploaded"), o.uploaded);
  text($("#outbox-dropped"), o.dropped_full + " / " + o.dropped_ttl);
  const tb = $("#stores tbody");
  tb.replaceChildren();
  $("#no-stores").hidden = Object.keys(s.stores).length > 0;
  for (const [name, l] of Object.entries(s.stores)) {
    const tr = document.createElement("tr");
    tr.dataset.store = name;
    cell(tr, name);
    cell(tr, l.online ? "online" : "offline", l.online ? "state-succeeded" : "state-failed");
    cell(tr, l.offline_since_ms ? ago(l.offline_since_ms).replace(" ago", "") : "");
    const err = cell(tr, short(l.last_error || ""));
    if (l.last_error) err.title = l.last_error;
    tb.appendChild(tr);
  }
  const wb = $("#waiting tbody");
  wb.replaceChildren();
  for (const o of s.outbox_waiting) {
    const tr = document.createElement("tr");
    cell(tr, o.provider);
    cell(tr, o.key);
    cell(tr, bytes(o.size), "num");
    cell(tr, o.attempts, "num");
    // The store's own error is said once, above: here only what is the object's own.
    const why = o.store_offline ? "its store is offline" : o.error ? short(o.error) : "next in line";
    const wait = Math.round((o.next_try_ms - Date.now()) / 1000);
    const td = cell(tr, why + (wait > 0 ? " (next try in " + wait + " s)" : ""));
    if (o.error) td.title = o.error;
    wb.appendChild(tr);
  }
  const i = s.ingest;
  text($("#ingest-spooled"), i.spooled);
  text($("#ingest-waiting"), i.raw_waiting);
  text($("#ingest-duplicates"), i.duplicates);
  text($("#ingest-rejected"), Object.values(i.rejected).reduce((a, b) => a + b, 0));
}

function drawDelegation(s) {
  const tb = $("#ran-on tbody");
  tb.replaceChildren();
  for (const [where, n] of Object.entries(s.delegation.ran_on)) {
    const tr = document.createElement("tr");
    cell(tr, where);
    cell(tr, n, "num");
    tb.appendChild(tr);
  }
  const mb = $("#members tbody");
  mb.replaceChildren();
  const members = s.delegation.members || [];
  $("#no-members").hidden = members.length > 0;
  for (const m of members) {
    const tr = document.createElement("tr");
    tr.dataset.member = m.member;
    cell(tr, m.member);
    cell(tr, m.up ? "up" : "down", m.up ? "state-succeeded" : "state-failed");
    cell(tr, m.failures ? m.failures + " failure(s): " + (m.last_error || "") : "");
    mb.appendChild(tr);
  }
}

async function refresh() {
  pending = null;
  try {
    status = await getJson("/fogd/status");
  } catch (e) {
    text($("#updated"), "not reachable: " + e.message);
    return;
  }
  drawHealth(status);
  drawCameras(status);
  drawJobs(status);
  drawOutbox(status);
  drawDelegation(status);
  refreshes += 1;
  document.body.dataset.refreshes = refreshes;
  text($("#updated"), "updated " + new Date().toLocaleTimeString());
}

// Bursts of events (a video's frames) make one refresh, not one each.
function soon() { if (!pending) pending = setTimeout(refresh, 300); }

window.addEventListener("hashchange", showView);
window.addEventListener("DOMContentLoaded", () => {
  showView();
  $("#log-close").addEventListener("click", () => { $("#log-panel").hidden = true; });
  refresh();
  setInterval(refresh, 10000);
  if (window.EventSource) {
    const es = new EventSource("/fogd/events");
    ["mask_result", "snapshot", "invocation_done", "invocation_delegated", "frame_anonymised", "frame_quarantined", "upload_done", "upload_dropped", "store_offline", "store_online"]
      .forEach(t => es.addEventListener(t, soon));
    es.addEventListener("zones", ev => { try { loadZones(JSON.parse(ev.data).camera); } catch (e) { /* not ours */ } });
    es.onmessage = soon;
  }
});
