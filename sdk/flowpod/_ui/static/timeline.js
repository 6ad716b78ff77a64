/* flowpod dashboard: the timeline of a flow run's task attempts (issue 14).
 *
 * Input: the "Timeline JSON" of docs (ui-spec), embedded in the page as
 * <script type="application/json" id="timeline-data"> and served at the URL in
 * <div id="timeline" data-src="...">. One row per task run, one bar per attempt coloured by
 * state, retry waits as hatched gaps, cache hits as markers, a relative time axis, zoom and
 * group-by-task. live.js dispatches `flowpod:change` on document; we then re-fetch data-src
 * and re-render, keeping zoom, scroll and grouping.
 *
 * Served as is by the Python package: plain JavaScript, no library, no build step. Every piece
 * of run data reaches the DOM through textContent or setAttribute, never innerHTML, because
 * task names, labels and messages are user input.
 */
(function () {
  "use strict";

  // flowpod._contract.states.StateName, in its order (the server's views.STATES).
  const STATES = ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed", "Cached",
    "Failed", "TimedOut", "Crashed", "Cancelled"];
  // A 1,000-task map is readable only as a handful of groups; below this, rows are shown.
  const AUTO_GROUP_ROWS = 200;
  const ZOOM_MAX = 1024;
  const ZOOM_STEP = 1.5;
  // "Nice" tick steps in ms; the smallest that leaves MIN_TICK_PX between ticks is used.
  const TICK_STEPS = [10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5,
    6e5, 9e5, 18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5];
  const MIN_TICK_PX = 72;

  // What the person chose; survives re-renders and reloads.
  const view = { zoom: 1, grouped: null /* null: automatic */, expanded: new Set() };
  const api = { render, reload, lastRenderMs: 0, renders: 0, renderedAt: 0, grouped: false };
  let data = null;
  let receivedAt = 0; // Date.now() when data arrived: "now" moves on from data.now
  let domain = { t0: 0, t1: 1, span: 1 };
  let live = []; // {el, start}: bars and waits whose end is "now"; they grow on a timer
  let timer = 0;
  let inflight = null;
  let again = false;
  let ui = null; // the elements built once: toolbar, scroller, canvas, ...

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // Only known states become class names; anything else is drawn as "unknown".
  function stateKey(state) {
    return STATES.includes(state) ? state : "Unknown";
  }

  // The server builds hrefs, but they are data: only same-site paths and http(s) URLs are links
  // (a "javascript:" URL would run code on click).
  function safeHref(href) {
    return typeof href === "string" && /^(\/(?!\/)|https?:\/\/)/i.test(href) ? href : null;
  }

  function num(value) {
    return typeof value === "number" && Number.isFinite(value) ? value : null;
  }

  function fmtDuration(ms) {
    ms = Math.max(0, ms);
    if (ms === 0) return "0s";
    if (ms < 1000) return Math.round(ms) + "ms";
    if (ms < 10e3) return +(ms / 1000).toFixed(1) + "s";
    const s = Math.round(ms / 1000);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60 ? " " + (s % 60) + "s" : "");
    const m = Math.round(s / 60);
    return Math.floor(m / 60) + "h" + (m % 60 ? " " + (m % 60) + "m" : "");
  }

  // Tick labels are relative to the flow run's start: 0s, 10s, 1m, 1m30s.
  function fmtTick(ms) {
    if (ms === 0) return "0s";
    if (Math.abs(ms) < 1000) return ms + "ms";
    return fmtDuration(ms).replace(" ", "");
  }

  function fmtClock(ms) {
    return new Date(ms).toLocaleTimeString();
  }

  function now() {
    return data ? data.now + (Date.now() - receivedAt) : Date.now();
  }

  function pct(t) {
    return ((t - domain.t0) / domain.span) * 100;
  }

  function place(node, start, end) {
    node.style.left = pct(start) + "%";
    node.style.width = Math.max(0, ((end - start) / domain.span) * 100) + "%";
  }

  /* ---- data ---------------------------------------------------------------------------- */

  // Cleans the JSON once so rendering can trust it: numbers are numbers, lists are lists.
  function normalise(raw) {
    const rows = Array.isArray(raw && raw.rows) ? raw.rows : [];
    const at = num(raw && raw.now) ?? Date.now();
    const out = { start: num(raw && raw.start), end: num(raw && raw.end), now: at, rows: [] };
    for (const r of rows) {
      if (!r || typeof r !== "object") continue;
      const attempts = (Array.isArray(r.attempts) ? r.attempts : [])
        .filter((a) => a && num(a.start) !== null)
        .map((a) => ({ ...a, start: a.start, end: num(a.end) }));
      const waits = (Array.isArray(r.waits) ? r.waits : [])
        .filter((w) => w && num(w.start) !== null)
        .map((w) => ({ start: w.start, end: num(w.end) }));
      const markers = (Array.isArray(r.markers) ? r.markers : [])
        .filter((m) => m && num(m.at) !== null);
      out.rows.push({
        id: String(r.id ?? ""), label: String(r.label ?? r.id ?? ""),
        task: String(r.task ?? r.label ?? ""), state: String(r.state ?? "Pending"),
        href: safeHref(r.href), attempts, waits, markers,
      });
    }
    if (out.start === null) {
      const starts = out.rows.flatMap((r) => r.attempts.map((a) => a.start));
      out.start = starts.length ? Math.min(...starts) : at;
    }
    return out;
  }

  function isRunning() {
    if (data.end === null) return true;
    return data.rows.some((r) => r.attempts.some((a) => a.end === null)
      || r.waits.some((w) => w.end === null));
  }

  // The visible time range: the flow run's start to its end (or now), widened to every attempt.
  // While something runs, headroom on the right lets bars grow without a full re-render.
  function computeDomain(t) {
    let t0 = data.start;
    let t1 = data.end ?? t;
    for (const r of data.rows) {
      for (const a of r.attempts) { t0 = Math.min(t0, a.start); t1 = Math.max(t1, a.end ?? t); }
      for (const w of r.waits) { t0 = Math.min(t0, w.start); t1 = Math.max(t1, w.end ?? t); }
      for (const m of r.markers) { t0 = Math.min(t0, m.at); t1 = Math.max(t1, m.at); }
    }
    // A little room after the end so its flag and the last bar's edge stay visible.
    if (isRunning()) t1 = Math.max(t1, t) + Math.max(5e3, (Math.max(t1, t) - t0) * 0.1);
    else t1 += (t1 - t0) * 0.03;
    if (t1 - t0 < 1000) t1 = t0 + 1000;
    return { t0, t1, span: t1 - t0 };
  }

  // Decided once, on the first data: a live run crossing the threshold does not flip the view
  // under the reader; the toggle (or data-group) decides from then on.
  function grouped() {
    if (view.grouped === null) {
      const tasks = new Set(data.rows.map((r) => r.task));
      view.grouped = data.rows.length > AUTO_GROUP_ROWS && tasks.size < data.rows.length;
    }
    return view.grouped;
  }

  /* ---- building the page ------------------------------------------------------------- */

  function button(text, label, onClick) {
    const b = el("button", "tl-btn", text);
    b.type = "button";
    b.title = label;
    b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }

  // The parts that live as long as the page: toolbar, legend, the scrolling area.
  function buildChrome(root) {
    root.classList.add("tl");
    const toolbar = el("div", "tl-toolbar");
    const range = el("input", "tl-zoom");
    range.type = "range";
    range.min = "0";
    range.max = String(Math.log2(ZOOM_MAX));
    range.step = "0.05";
    range.value = "0";
    range.setAttribute("aria-label", "zoom");
    range.addEventListener("input", () => setZoom(2 ** Number(range.value)));
    const groupBox = el("input");
    groupBox.type = "checkbox";
    groupBox.addEventListener("change", () => {
      view.grouped = groupBox.checked;
      renderRows();
    });
    const groupLabel = el("label", "tl-group-toggle");
    groupLabel.append(groupBox, document.createTextNode(" group by task"));
    const info = el("span", "tl-info");
    toolbar.append(
      button("\u2212", "zoom out", () => setZoom(view.zoom / ZOOM_STEP)),
      button("+", "zoom in", () => setZoom(view.zoom * ZOOM_STEP)),
      button("fit", "fit the whole run", () => setZoom(1)),
      range, groupLabel, info);
    const legend = el("div", "tl-legend");
    const status = el("div", "tl-status");
    status.setAttribute("role", "status");
    const scroller = el("div", "tl-scroll");
    const canvas = el("div", "tl-canvas");
    const axis = el("div", "tl-axis");
    const axisLabel = el("div", "tl-axis-label", "task run");
    const axisTrack = el("div", "tl-axis-track");
    axis.append(axisLabel, axisTrack);
    const rows = el("div", "tl-rows");
    rows.setAttribute("role", "list");
    canvas.append(axis, rows);
    scroller.append(canvas);
    root.replaceChildren(toolbar, legend, status, scroller);

    // ctrl+wheel zooms around the pointer (plain wheel keeps scrolling; shift+wheel pans).
    scroller.addEventListener("wheel", (ev) => {
      if (!ev.ctrlKey) return;
      ev.preventDefault();
      setZoom(view.zoom * (ev.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP), ev.clientX);
    }, { passive: false });
    rows.addEventListener("click", (ev) => {
      const toggle = ev.target.closest(".tl-toggle");
      if (!toggle) return;
      const task = toggle.dataset.task;
      if (view.expanded.has(task)) view.expanded.delete(task); else view.expanded.add(task);
      renderRows();
    });
    // Tick density depends on the width in pixels.
    let pending = 0;
    new ResizeObserver(() => {
      if (!pending) pending = requestAnimationFrame(() => { pending = 0; renderAxis(); });
    }).observe(scroller);
    ui = { root, range, groupBox, info, legend, status, scroller, axisLabel, axisTrack, rows };
  }

  function labelWidth() {
    return ui.axisLabel.getBoundingClientRect().width;
  }

  function trackWidth() {
    return Math.max(1, (ui.scroller.clientWidth - labelWidth()) * view.zoom);
  }

  // Zoom only changes a CSS variable (bars are placed in % of the track), so it is cheap; the
  // time under the anchor (pointer, else the middle) stays put.
  function setZoom(z, clientX) {
    z = Math.min(ZOOM_MAX, Math.max(1, z));
    if (!ui || !data) { view.zoom = z; return; }
    const box = ui.scroller.getBoundingClientRect();
    const lw = labelWidth();
    const ax = clientX === undefined ? lw + (box.width - lw) / 2 : clientX - box.left;
    const at = (ui.scroller.scrollLeft + ax - lw) / trackWidth();
    view.zoom = z;
    ui.root.style.setProperty("--tl-zoom", String(z));
    ui.scroller.scrollLeft = at * trackWidth() + lw - ax;
    ui.range.value = String(Math.log2(z));
    renderAxis();
  }

  function attemptText(row, a, t) {
    const end = a.end ?? t;
    const lines = [`${row.label} \u00b7 attempt ${a.n ?? "?"}: ${a.state ?? "Unknown"}`,
      `${a.end === null ? "running for" : "took"} ${fmtDuration(end - a.start)} ` +
      `(+${fmtDuration(a.start - data.start)} to +${fmtDuration(end - data.start)})`];
    const why = [a.reason, a.message].filter((s) => typeof s === "string" && s).join(": ");
    if (why) lines.push(why);
    return lines;
  }

  // A link when the row has a page, else a plain span; bars are skipped by Tab (the row's label
  // is the keyboard way to the same page).
  function linkOrSpan(href, cls, focusable) {
    const node = el(href ? "a" : "span", cls);
    if (href) {
      node.setAttribute("href", href);
      if (!focusable) node.tabIndex = -1;
    }
    return node;
  }

  function describe(node, lines) {
    node.title = lines.join("\n");
    node.setAttribute("aria-label", lines.join(". "));
  }

  function taskRow(r, t, nested) {
    const row = el("div", nested ? "tl-row tl-nested" : "tl-row");
    row.setAttribute("role", "listitem");
    row.dataset.state = r.state;
    row.dataset.task = r.task;
    row.dataset.row = r.id;  // the TaskRun's name: lets a test or a user script find its row
    const label = el("div", "tl-label");
    const dot = el("span", "tl-dot tl-s-" + stateKey(r.state));
    dot.setAttribute("aria-hidden", "true");
    const name = linkOrSpan(r.href, "tl-name", true);
    name.textContent = r.label;
    const n = r.attempts.length;
    name.title = `${r.label} (task ${r.task}): ${r.state}, ${n} attempt${n === 1 ? "" : "s"}`;
    label.append(dot, name);
    const track = el("div", "tl-track");
    for (const w of r.waits) {
      const gap = el("span", "tl-wait");
      place(gap, w.start, w.end ?? t);
      if (w.end === null) live.push({ el: gap, start: w.start });
      describe(gap, [`${r.label}: waiting to retry`,
        `${w.end === null ? "for" : "waited"} ${fmtDuration((w.end ?? t) - w.start)}`]);
      track.append(gap);
    }
    for (const a of r.attempts) {
      const bar = linkOrSpan(r.href, "tl-bar tl-s-" + stateKey(a.state));
      bar.dataset.state = String(a.state ?? "");
      bar.dataset.attempt = String(a.n ?? "");
      place(bar, a.start, a.end ?? t);
      if (a.end === null) {
        bar.classList.add("tl-live");
        live.push({ el: bar, start: a.start, row: r, attempt: a });
      }
      describe(bar, attemptText(r, a, t));
      track.append(bar);
    }
    for (const m of r.markers) {
      const kind = String(m.kind ?? "marker").replace(/[^a-z0-9-]/gi, "");
      const mark = linkOrSpan(r.href, "tl-marker tl-m-" + kind);
      mark.dataset.marker = kind;
      mark.style.left = pct(m.at) + "%";
      describe(mark, [`${r.label}: ${m.label || kind}`, `at +${fmtDuration(m.at - data.start)}`]);
      track.append(mark);
    }
    row.append(label, track);
    return row;
  }

  function countStates(rows) {
    const counts = new Map();
    for (const r of rows) counts.set(r.state, (counts.get(r.state) || 0) + 1);
    const order = (s) => (STATES.includes(s) ? STATES.indexOf(s) : STATES.length);
    return [...counts].sort((a, b) => order(a[0]) - order(b[0]))
      .map(([s, c]) => `${c} ${s}`).join(", ");
  }

  // One row per task name: "load ×1000" and "990 Completed, 10 Failed"; its track shows the span
  // from the first attempt's start to the last one's end.
  function groupRow(task, rows, t) {
    const row = el("div", "tl-row tl-group");
    row.setAttribute("role", "listitem");
    row.dataset.task = task;
    const open = view.expanded.has(task);
    const label = el("div", "tl-label");
    const toggle = el("button", "tl-toggle");
    toggle.type = "button";
    toggle.dataset.task = task;
    toggle.setAttribute("aria-expanded", String(open));
    const summary = countStates(rows);
    toggle.append(el("span", "tl-group-name", `${task} \u00d7${rows.length}`),
      el("span", "tl-summary", summary));
    toggle.title = `${task} \u00d7${rows.length}: ${summary}` +
      (open ? " (click to collapse)" : " (click to show its task runs)");
    label.append(toggle);
    const track = el("div", "tl-track");
    let lo = Infinity;
    let hi = -Infinity;
    let running = false;
    for (const r of rows) {
      for (const a of r.attempts) {
        lo = Math.min(lo, a.start);
        hi = Math.max(hi, a.end ?? t);
        running = running || a.end === null;
      }
      for (const m of r.markers) { lo = Math.min(lo, m.at); hi = Math.max(hi, m.at); }
    }
    if (lo <= hi) {
      const span = el("span", "tl-range");
      place(span, lo, hi);
      if (running) live.push({ el: span, start: lo });
      describe(span, [`${task}: ${rows.length} task runs`,
        `+${fmtDuration(lo - data.start)} to +${fmtDuration(hi - data.start)}`, summary]);
      track.append(span);
    }
    row.append(label, track);
    return row;
  }

  function renderRows() {
    const t = now();
    live = [];
    const frag = document.createDocumentFragment();
    const isGrouped = grouped();
    api.grouped = isGrouped;
    ui.groupBox.checked = isGrouped;
    if (isGrouped) {
      const groups = new Map(); // in first-seen order, as the server sorted the rows
      for (const r of data.rows) {
        if (!groups.has(r.task)) groups.set(r.task, []);
        groups.get(r.task).push(r);
      }
      for (const [task, rows] of groups) {
        frag.append(groupRow(task, rows, t));
        if (view.expanded.has(task)) for (const r of rows) frag.append(taskRow(r, t, true));
      }
    } else {
      for (const r of data.rows) frag.append(taskRow(r, t, false));
    }
    if (!data.rows.length) frag.append(el("div", "tl-empty", "no task runs yet"));
    const guides = el("div", "tl-guides");
    guides.setAttribute("aria-hidden", "true");
    frag.prepend(guides);
    ui.rows.replaceChildren(frag);
    renderAxis(); // fills the new guides
  }

  // The axis and the full-height guides (ticks, the run's start, end and now) depend on the
  // width in pixels, so zoom and resize redraw them (a few dozen nodes) but not the rows.
  function renderAxis() {
    if (!ui || !data) return;
    const t = now();
    const perMs = trackWidth() / domain.span;
    const step = TICK_STEPS.find((s) => s * perMs >= MIN_TICK_PX) ?? TICK_STEPS.at(-1);
    const ticks = document.createDocumentFragment();
    const guides = document.createDocumentFragment();
    const first = Math.ceil((domain.t0 - data.start) / step) * step;
    for (let rel = first; data.start + rel <= domain.t1; rel += step) {
      const tick = el("span", "tl-tick", fmtTick(rel));
      tick.style.left = pct(data.start + rel) + "%";
      ticks.append(tick);
      const line = el("span", "tl-guide");
      line.style.left = tick.style.left;
      guides.append(line);
    }
    const edges = [["tl-edge", data.start, "start " + fmtClock(data.start)]];
    if (data.end !== null) edges.push(["tl-edge tl-end", data.end, "end " + fmtClock(data.end)]);
    else edges.push(["tl-now", t, "now"]);
    for (const [cls, at, text] of edges) {
      const flag = el("span", "tl-flag " + cls, text);
      flag.style.left = pct(at) + "%";
      ticks.append(flag);
      const line = el("span", "tl-guide " + cls);
      line.style.left = flag.style.left;
      guides.append(line);
    }
    ui.axisTrack.replaceChildren(ticks);
    const box = ui.rows.querySelector(".tl-guides");
    if (box) box.replaceChildren(guides);
  }

  function renderChrome() {
    const t = now();
    const attempts = data.rows.reduce((n, r) => n + r.attempts.length, 0);
    const parts = [`${data.rows.length} task runs, ${attempts} attempts`,
      `started ${fmtClock(data.start)}`];
    parts.push(data.end !== null
      ? `ended ${fmtClock(data.end)} (${fmtDuration(data.end - data.start)})`
      : `running for ${fmtDuration(t - data.start)}`);
    ui.info.textContent = parts.join(" \u00b7 ");
    // The legend names the states on screen, so colour is never the only cue.
    const seen = new Set();
    let waits = false;
    let cached = false;
    for (const r of data.rows) {
      for (const a of r.attempts) seen.add(stateKey(a.state));
      waits = waits || r.waits.length > 0;
      cached = cached || r.markers.some((m) => m.kind === "cached");
    }
    const items = STATES.filter((s) => seen.has(s)).map((s) => [`tl-bar tl-s-${s}`, s]);
    if (seen.has("Unknown")) items.push(["tl-bar tl-s-Unknown", "other"]);
    if (waits) items.push(["tl-wait", "waiting to retry"]);
    if (cached) items.push(["tl-marker tl-m-cached", "cache hit"]);
    const frag = document.createDocumentFragment();
    for (const [cls, text] of items) {
      const item = el("span", "tl-legend-item");
      const swatch = el("span", "tl-swatch " + cls);
      swatch.setAttribute("aria-hidden", "true");
      item.append(swatch, document.createTextNode(text));
      frag.append(item);
    }
    ui.legend.replaceChildren(frag);
  }

  // Running bars follow the clock; a full render only when "now" passes the headroom.
  function tick() {
    if (!data) return;
    const t = now();
    if (t > domain.t1) { render(); return; }
    for (const item of live) {
      place(item.el, item.start, t);
      if (item.attempt) describe(item.el, attemptText(item.row, item.attempt, t));
    }
    renderAxis();
    renderChrome();
  }

  /** Draws `next` (the timeline JSON), or the current data again when called without it. */
  function render(next) {
    const began = performance.now();
    if (next !== undefined) {
      data = normalise(next);
      receivedAt = Date.now();
    }
    if (!ui || !data) return;
    const left = ui.scroller.scrollLeft;
    const top = ui.scroller.scrollTop;
    domain = computeDomain(now());
    ui.root.style.setProperty("--tl-zoom", String(view.zoom));
    renderRows();
    renderChrome();
    ui.scroller.scrollLeft = left;
    ui.scroller.scrollTop = top;
    clearInterval(timer);
    timer = isRunning() ? setInterval(tick, 1000) : 0;
    api.renders += 1;
    api.lastRenderMs = performance.now() - began;
    // renderedAt: after the frame that shows it has painted (rAF runs before paint, the
    // timeout after it); the benchmark reads it as "navigation to rendered".
    const count = api.renders;
    requestAnimationFrame(() => setTimeout(() => {
      if (api.renders === count) api.renderedAt = performance.now();
    }, 0));
  }

  /** Fetches data-src and renders it; calls during a fetch coalesce into one more fetch. */
  function reload() {
    const src = ui && ui.root.dataset.src;
    if (!src) return Promise.resolve();
    if (inflight) { again = true; return inflight; }
    inflight = (async () => {
      try {
        do {
          again = false;
          const resp = await fetch(src, { cache: "no-store", headers: { Accept: "application/json" } });
          if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
          render(await resp.json());
        } while (again);
        ui.status.textContent = "";
      } catch (err) {
        ui.status.textContent = `could not refresh the timeline: ${err.message}`;
      } finally {
        inflight = null;
      }
    })();
    return inflight;
  }

  function init() {
    const root = document.getElementById("timeline");
    if (!root) return;
    // data-group="tasks" or "rows" lets a page choose; without it, large runs are grouped.
    if (root.dataset.group === "tasks" || root.dataset.group === "rows") {
      view.grouped = root.dataset.group === "tasks";
    }
    buildChrome(root);
    const embedded = document.getElementById("timeline-data");
    let initial = null;
    try {
      initial = embedded ? JSON.parse(embedded.textContent) : null;
    } catch (err) {
      ui.status.textContent = `the timeline data is not valid JSON: ${err.message}`;
    }
    if (initial) render(initial); else reload();
    document.addEventListener("flowpod:change", () => { reload(); });
  }

  window.flowpodTimeline = api;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
