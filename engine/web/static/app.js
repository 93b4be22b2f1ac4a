// The nas-engine dashboard: one server-sent event stream (api/stream) feeds every view.
// A "snapshot" replaces the state, an "update" carries the models that changed and their
// new curve points, "end" says the run is over. No framework, no build step.
"use strict";

const PAGE = 50;                    // table rows per page
const CURVE_POINTS = 16;            // points per curve drawn in the overlay
const STATUSES = ["frozen", "training", "trained", "failed", "retrying", "interrupted", "invalid", "paused"];
const FINISHED = new Set(["trained", "failed", "interrupted", "invalid"]);

const state = {
  run: {}, models: new Map(), curves: new Map(), mode: null,
  sort: { key: "id", dir: 1 }, filter: "", status: "", page: 0, selected: null,
  view: [], dirty: new Set(), frame: 0, chartsDrawn: 0, chartsTimer: 0,
};

const $ = (id) => document.getElementById(id);

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 1000 ? value.toFixed(0) : value.toPrecision(digits);
}

function sampleText(sample) {
  return Object.entries(sample).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ");
}

function withText(m) {            // the text a row is sorted and filtered by, made once
  m.text = sampleText(m.sample);
  m.haystack = `${m.id} ${m.text} ${m.worker || ""} ${m.reason || ""} ${m.status}`.toLowerCase();
  return m;
}

function better(a, b) {             // is metric a better than b under the current mode?
  return state.mode === "min" ? a < b : a > b;
}

// --- the stream ---------------------------------------------------------------------

function connect() {
  const source = new EventSource("api/stream");
  source.addEventListener("snapshot", (e) => {
    const data = JSON.parse(e.data);
    state.models = new Map(data.models.map((m) => [m.id, withText(m)]));
    state.curves = new Map(Object.entries(data.curves).map(([id, c]) => [Number(id), c]));
    setRun(data.run);
    refreshDetail();
    schedule();
  });
  source.addEventListener("update", (e) => {
    const data = JSON.parse(e.data);
    for (const row of data.models) state.models.set(row.id, withText(row));
    for (const [id, change] of Object.entries(data.points)) {
      const key = Number(id);
      const curve = change.reset ? [] : (state.curves.get(key) || []);
      state.curves.set(key, curve.concat(change.points));
    }
    setRun(data.run);
    if (data.models.some((m) => m.id === state.selected)) refreshDetail();
    schedule();
  });
  source.addEventListener("end", () => {
    source.close();
    state.run.writing = false;
    showLive();
  });
  source.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "badge"; };
}

function setRun(run) {
  state.run = Object.assign(state.run, run);
  if (state.mode === null) {
    state.mode = run.mode || "max";
    $("mode").value = state.mode;
  }
  if (run.name) {
    $("run-name").textContent = run.name;
    document.title = `${run.name} - nas-engine`;
  }
  showLive();
}

function showLive() {
  const run = state.run, live = $("live");
  live.className = run.writing ? "badge live" : "badge";
  live.textContent = run.writing ? "live" : run.stopped ? `stopped (${run.stopped})` : "not running";
}

// Redraw the given parts ("table", "charts") at the next frame. The charts of a large run
// are redrawn at most about once a second: each draws every model.
function schedule(...parts) {
  for (const part of parts.length ? parts : ["table", "charts"]) state.dirty.add(part);
  if (!state.frame) state.frame = requestAnimationFrame(render);
}

function render() {
  state.frame = 0;
  const dirty = state.dirty;
  state.dirty = new Set();
  if (dirty.has("table")) {
    renderSummary();
    renderTable();
  }
  if (dirty.has("charts")) {
    const wait = state.chartsDrawn + Math.min(1000, state.models.size / 10) - performance.now();
    if (wait > 0) {
      if (!state.chartsTimer) {
        state.chartsTimer = setTimeout(() => { state.chartsTimer = 0; schedule("charts"); }, wait);
      }
      return;
    }
    renderBest();
    renderCurves();
    renderParallel();
    state.chartsDrawn = performance.now();
  }
}

// --- summary ------------------------------------------------------------------------

function renderSummary() {
  const counts = {};
  for (const m of state.models.values()) counts[m.status] = (counts[m.status] || 0) + 1;
  const parts = [`<span><b>${state.models.size}</b> models</span>`];
  for (const s of STATUSES) {
    if (counts[s]) parts.push(`<span><i class="dot ${s}"></i>${s} <b>${counts[s]}</b></span>`);
  }
  $("counts").innerHTML = parts.join("");
  const finished = STATUSES.filter((s) => FINISHED.has(s)).reduce((n, s) => n + (counts[s] || 0), 0);
  const max = Number((state.run.meta || {}).max_trials) || 0;
  const total = max || state.models.size;
  $("budget-fill").style.width = `${total ? (100 * finished) / total : 0}%`;
  $("budget-text").textContent = max ? `${finished} of ${max} trials (budget)` : `${finished} of ${total} finished`;
  const select = $("status-filter");
  if (select.options.length === 1) {
    for (const s of STATUSES) select.add(new Option(s, s));
  }
}

// --- the table ----------------------------------------------------------------------

function sortValue(m, key) {
  if (key === "sample") return m.text;
  return m[key];
}

function computeView() {
  const text = state.filter.toLowerCase(), status = state.status;
  const { key, dir } = state.sort;
  const view = [];
  for (const m of state.models.values()) {
    if (status && m.status !== status) continue;
    if (text && !m.haystack.includes(text)) continue;
    view.push(m);
  }
  view.sort((a, b) => {
    const x = sortValue(a, key), y = sortValue(b, key);
    if (x === y) return a.id - b.id;
    if (x === null || x === undefined) return 1;            // missing values last
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
  return view;
}

function renderTable() {
  state.view = computeView();
  const pages = Math.max(1, Math.ceil(state.view.length / PAGE));
  state.page = Math.min(state.page, pages - 1);
  const rows = state.view.slice(state.page * PAGE, (state.page + 1) * PAGE);
  $("rows").innerHTML = rows.map((m) => `<tr data-id="${m.id}" data-status="${m.status}"${m.id === state.selected ? ' class="selected"' : ""}>
    <td class="num">${m.id}</td><td class="sample" title="${escape(m.text)}">${escape(m.text)}</td>
    <td><i class="dot ${m.status}"></i>${m.status}</td>
    <td class="num">${fmt(m.final)}</td><td class="num">${fmt(m.latest)}</td><td class="num">${m.steps}</td>
    <td class="num">${m.duration === null ? "" : m.duration.toFixed(2) + " s"}</td><td>${escape(m.worker || "")}</td>
    <td class="num">${m.attempts}</td><td class="reason" title="${escape(m.reason || "")}">${escape(m.reason || "")}</td></tr>`).join("");
  $("shown").textContent = `${state.view.length} of ${state.models.size} models`;
  $("page").textContent = ` ${state.page + 1} / ${pages} `;
  for (const th of document.querySelectorAll("th")) {
    th.className = th.dataset.key === state.sort.key ? (state.sort.dir > 0 ? "asc" : "desc") : "";
  }
}

// --- charts -------------------------------------------------------------------------

function canvasContext(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== width * ratio || canvas.height !== height * ratio) {
    canvas.width = width * ratio;
    canvas.height = height * ratio;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, width, height };
}

function extent(values, padding = 0.05) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 0.5, hi + 0.5];
  const pad = (hi - lo) * padding;
  return [lo - pad, hi + pad];
}

// A plot area with axes; returns x(v) and y(v) that map data to pixels.
function axes(canvas, xs, ys, empty) {
  const { ctx, width, height } = canvasContext(canvas);
  const left = 44, right = 10, top = 6, bottom = 18;
  const [x0, x1] = extent(xs, 0), [y0, y1] = extent(ys);
  const x = (v) => left + ((v - x0) / (x1 - x0)) * (width - left - right);
  const y = (v) => height - bottom - ((v - y0) / (y1 - y0)) * (height - top - bottom);
  ctx.strokeStyle = "#d9dee6";
  ctx.fillStyle = "#6b7585";
  ctx.strokeRect(left, top, width - left - right, height - top - bottom);
  if (empty) {
    ctx.fillText(empty, left + 10, top + 20);
    return null;
  }
  for (let i = 0; i <= 3; i++) {
    const yv = y0 + ((y1 - y0) * i) / 3, xv = x0 + ((x1 - x0) * i) / 3;
    ctx.fillText(fmt(yv, 3), 2, y(yv) + 4);
    ctx.fillText(fmt(xv, 3), Math.min(x(xv) - 6, width - 36), height - 4);
  }
  return { ctx, x, y };
}

function line(plot, points, style, width, alpha = 1) {
  const { ctx, x, y } = plot;
  ctx.globalAlpha = alpha;
  ctx.strokeStyle = style;
  ctx.lineWidth = width;
  ctx.beginPath();
  points.forEach(([a, b], i) => (i ? ctx.lineTo(x(a), y(b)) : ctx.moveTo(x(a), y(b))));
  ctx.stroke();
  ctx.globalAlpha = 1;
}

function dots(plot, points, style, radius = 2) {
  const { ctx, x, y } = plot;
  ctx.fillStyle = style;
  for (const [a, b] of points) ctx.fillRect(x(a) - radius / 2, y(b) - radius / 2, radius, radius);
}

// Best so far as `nas-engine plot` draws it (engine.cli._plot.best_so_far): the models
// that ended or paused, in that order (each is a trial, failed ones too), each ranked by
// the value it ranks by (a trained model's final, a paused one's last intermediate) at
// its fidelity (the step it was stopped or paused at; Infinity: trained to its end). The
// best so far is the best at the highest fidelity reached so far, so a model stopped or
// paused after 2 steps never stands above one trained to its end.
function bestSoFar(models) {
  const done = models
    .filter((m) => (FINISHED.has(m.status) || m.status === "paused") && Number.isFinite(m.ranked_at))
    .sort((a, b) => a.ranked_at - b.ranked_at || a.id - b.id);
  const points = [];
  let best = null;
  done.forEach((m, i) => {
    if (!Number.isFinite(m.ranked)) return;
    const fidelity = m.fidelity === null || m.fidelity === undefined ? Infinity : m.fidelity;
    if (best === null || fidelity > best.fidelity
        || (fidelity === best.fidelity && better(m.ranked, best.value))) {
      best = { id: m.id, value: m.ranked, fidelity, status: m.status };
    }
    points.push({ trial: i + 1, time: m.ranked_at, value: m.ranked, fidelity, best });
  });
  return points;
}

function atStep(fidelity) {        // "" for a model trained to its end, else " at step N"
  return fidelity === Infinity ? "" : ` at step ${fidelity}`;
}

function renderBest() {
  const points = bestSoFar([...state.models.values()]);
  const t0 = state.run.first_time || 0;
  const best = points.length ? points[points.length - 1].best : null;
  const short = points.filter((p) => p.fidelity !== Infinity);
  const note = $("best-note");
  note.textContent = best === null ? "" : `best ${fmt(best.value)}${atStep(best.fidelity)} (model ${best.id}`
    + `${best.fidelity === Infinity ? "" : best.status === "paused" ? ", paused" : ", stopped early"})`
    + `${short.length ? "; \u00d7 ranked at the step it reached" : ""}`;
  note.dataset.fidelity = best === null || best.fidelity === Infinity ? "" : String(best.fidelity);
  for (const [id, at] of [["best-trials", (p) => p.trial], ["best-time", (p) => p.time - t0]]) {
    const plot = axes($(id), points.map(at), points.map((p) => p.value), points.length ? null : "no ranked model yet");
    if (!plot) continue;
    dots(plot, points.filter((p) => p.fidelity === Infinity).map((p) => [at(p), p.value]), "#8a94a6");
    crosses(plot, short.map((p) => [at(p), p.value]), "#d9822b");
    line(plot, stairs(points.map((p) => [at(p), p.best.value])), "#1f9d55", 2);
  }
}

function crosses(plot, points, style, radius = 3) {  // a model ranked below its end
  const { ctx, x, y } = plot;
  ctx.strokeStyle = style;
  ctx.lineWidth = 1.2;
  ctx.beginPath();
  for (const [a, b] of points) {
    ctx.moveTo(x(a) - radius, y(b) - radius); ctx.lineTo(x(a) + radius, y(b) + radius);
    ctx.moveTo(x(a) - radius, y(b) + radius); ctx.lineTo(x(a) + radius, y(b) - radius);
  }
  ctx.stroke();
}

function stairs(points) {          // best-so-far holds until the next improvement
  const out = [];
  points.forEach((p, i) => { if (i) out.push([p[0], points[i - 1][1]]); out.push(p); });
  return out;
}

function thin(curve, n) {
  if (curve.length <= n) return curve;
  const out = [], last = curve.length - 1;
  for (let i = 0; i < n; i++) out.push(curve[Math.round((i * last) / (n - 1))]);
  return out;
}

function renderCurves() {
  const curves = [...state.curves.entries()].filter(([, c]) => c.length);
  const xs = [], ys = [];
  for (const [, c] of curves) for (const [s, v] of c) { xs.push(s); ys.push(v); }
  const plot = axes($("curves"), xs, ys, curves.length ? null : "no metric reported yet");
  $("curve-label").textContent = state.selected === null ? "(all; click a model)" : `(model ${state.selected} highlighted)`;
  if (!plot) return;
  const alpha = Math.max(0.01, Math.min(0.6, 30 / curves.length));
  for (const [, c] of curves) line(plot, thin(c, CURVE_POINTS), "#2f6fde", 1, alpha);
  const selected = state.curves.get(state.selected);
  if (selected && selected.length) line(plot, selected, "#d64545", 2.5);
}

// The models the parallel coordinates draw: trained to their end. A model its strategy
// stopped early has a final from an earlier step: drawn beside full trainings it would
// look like one (ranking knows fidelity), so it is left out and counted in the caption.
function parallelModels(models) {
  const trained = models.filter((m) => m.status === "trained" && Number.isFinite(m.final));
  const full = trained.filter((m) => m.fidelity === null || m.fidelity === undefined);
  return { full, early: trained.length - full.length };
}

// Parallel coordinates: one axis per sample label, the final metric last.
function renderParallel() {
  const canvas = $("parallel");
  const { full: models, early } = parallelModels([...state.models.values()]);
  $("parallel-note").textContent = early ? `(${early} stopped early left out)` : "";
  const { ctx, width, height } = canvasContext(canvas);
  if (!models.length) {
    ctx.fillStyle = "#6b7585";
    ctx.fillText(early ? "no model trained to its end yet" : "no trained model yet", 50, 30);
    return;
  }
  const labels = [...new Set(models.flatMap((m) => Object.keys(m.sample)))].sort();
  const scales = labels.map((label) => scale(models.map((m) => m.sample[label])));
  scales.push(scale(models.map((m) => m.final)));
  const names = [...labels, "final"];
  const top = 18, bottom = height - 16, left = 40, step = (width - 2 * left) / Math.max(1, names.length - 1);
  const xOf = (i) => (names.length === 1 ? width / 2 : left + i * step);
  const yOf = (i, value) => bottom - scales[i](value) * (bottom - top);
  const [lo, hi] = extent(models.map((m) => m.final));
  const ordered = models.slice().sort((a, b) => (better(a.final, b.final) ? 1 : -1));
  ctx.lineWidth = 1;
  const fade = Math.min(1, 200 / models.length);  // many lines: each fainter
  for (const m of ordered) {       // the best drawn last, on top
    const t = (m.final - lo) / (hi - lo || 1), q = state.mode === "min" ? 1 - t : t;
    const alpha = Math.max(0.01, (0.2 + 0.7 * q * q) * fade);
    // A colour ramp for a few lines; one colour for many (faint blends drift in hue).
    ctx.strokeStyle = fade < 1 ? `rgba(47, 111, 222, ${alpha})`
      : `rgba(${Math.round(200 - 170 * q)}, ${Math.round(210 - 120 * q)}, ${Math.round(235 - 60 * q)}, ${alpha})`;
    ctx.lineWidth = m.id === state.selected ? 3 : 1;
    if (m.id === state.selected) ctx.strokeStyle = "#d64545";
    ctx.beginPath();
    names.forEach((name, i) => {
      const value = i < labels.length ? m.sample[name] : m.final;
      const px = xOf(i), py = yOf(i, value);
      i ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
    });
    ctx.stroke();
  }
  ctx.fillStyle = "#1d2430";
  ctx.strokeStyle = "#6b7585";
  ctx.lineWidth = 1;
  names.forEach((name, i) => {
    const px = xOf(i);
    ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, bottom); ctx.stroke();
    ctx.fillText(name, px - ctx.measureText(name).width / 2, 11);
    for (const [text, where] of scales[i].ticks) ctx.fillText(text, px + 3, bottom - where * (bottom - top) + 4);
  });
}

// A [0, 1] scale for a column of sample values: linear for numbers, else categorical.
function scale(values) {
  const numbers = values.every((v) => typeof v === "number");
  if (numbers) {
    const [lo, hi] = extent(values);
    const f = (v) => (v - lo) / (hi - lo);
    f.ticks = [[fmt(lo + (hi - lo) * 0.05, 3), 0.05], [fmt(hi - (hi - lo) * 0.05, 3), 0.95]];
    return f;
  }
  const keys = [...new Set(values.map((v) => JSON.stringify(v)))].sort();
  const at = new Map(keys.map((k, i) => [k, keys.length === 1 ? 0.5 : 0.05 + (0.9 * i) / (keys.length - 1)]));
  const f = (v) => at.get(JSON.stringify(v)) ?? 0.5;
  f.ticks = keys.length <= 8 ? keys.map((k) => [k.length > 14 ? k.slice(0, 13) + "…" : k, at.get(k)]) : [];
  return f;
}

// --- one model ----------------------------------------------------------------------

function select(id) {
  state.selected = id;
  $("detail").hidden = id === null;
  refreshDetail();
  schedule();
}

async function refreshDetail() {
  const id = state.selected;
  if (id === null) return;
  const response = await fetch(`api/models/${id}`);
  if (!response.ok || state.selected !== id) return;
  const m = await response.json();
  $("detail-id").textContent = m.id;
  const facts = [["status", m.status], ["sample", JSON.stringify(m.sample)], ["attempts", m.attempts],
    ["worker", m.worker], ["final", fmt(m.final)], ["latest", fmt(m.latest)], ["steps", m.steps],
    ["duration", m.duration === null ? "" : `${m.duration.toFixed(3)} s`], ["reason", m.reason]];
  $("detail-facts").innerHTML = facts.map(([k, v]) => `<dt>${k}</dt><dd>${escape(v ?? "")}</dd>`).join("");
  $("detail-error").hidden = m.traceback === null;
  $("error-title").textContent = m.traceback === null ? "" : `${m.error_type}: ${m.message}`;
  $("traceback").textContent = m.traceback || "";
  $("detail-output").innerHTML = Object.entries(m.output)
    .map(([name, text]) => `<h3>${escape(name)}</h3><pre class="output">${escape(text)}</pre>`).join("");
  state.curves.set(id, m.curve);     // the full curve, not the overlay's few points
  schedule();
}

// --- controls -----------------------------------------------------------------------

function setup() {
  $("rows").addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (tr) select(Number(tr.dataset.id));
  });
  for (const th of document.querySelectorAll("th")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
      schedule("table");
    });
  }
  $("filter").addEventListener("input", (e) => { state.filter = e.target.value; state.page = 0; schedule("table"); });
  $("status-filter").addEventListener("change", (e) => { state.status = e.target.value; state.page = 0; schedule("table"); });
  $("prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); schedule("table"); });
  $("next").addEventListener("click", () => { state.page += 1; schedule("table"); });
  $("mode").addEventListener("change", (e) => { state.mode = e.target.value; schedule(); });
  $("detail-close").addEventListener("click", () => select(null));
  window.addEventListener("resize", schedule);
  connect();
}

setup();
