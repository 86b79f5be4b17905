// livenb live widgets: one ES module for the table, the chart and the status panel.
//
// Loaded by anywidget from the livenb package (nothing from a CDN). Python sends small
// messages ({kind: "rows" | "points" | "status", ...}; see livenb/_views.py) at most about
// ten times a second; every message says which position it continues from ("prev"), so a
// view that missed one asks for a reset ({type: "resync"}) instead of showing a hole.
// Drawing happens at most once per animation frame, whatever the message rate.

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatTime(seconds) {
  if (typeof seconds !== "number") return "";
  const iso = new Date(seconds * 1000).toISOString(); // UTC, like the frame's ts column
  return iso.slice(11, 23);
}

function formatValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    const text = value.toPrecision(6);
    return text.includes("e") ? text : String(Number(text));
  }
  if (typeof value === "boolean") return value ? "true" : "false";
  return String(value);
}

// One frame of drawing per burst of messages; never draws a half-updated state.
function scheduler(draw) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  };
}

// Header with title, a pause/resume button and a status line shared by table and chart.
function frame(model, el, kind) {
  const root = element("div", `livenb-widget livenb-${kind}`);
  const head = element("div", "livenb-head");
  const title = element("span", "livenb-title", model.get("title"));
  const info = element("span", "livenb-info", "waiting for data");
  const button = element("button", "livenb-pause");
  button.type = "button";
  const showPaused = () => {
    const paused = model.get("paused");
    button.textContent = paused ? "Resume" : "Pause";
    button.setAttribute("aria-pressed", paused ? "true" : "false");
    root.classList.toggle("livenb-paused", paused);
  };
  button.addEventListener("click", () => {
    model.set("paused", !model.get("paused"));
    model.save_changes();
  });
  model.on("change:paused", showPaused);
  showPaused();
  head.append(title, button, info);
  const body = element("div", "livenb-body");
  root.append(head, body);
  el.append(root);
  return { root, body, info };
}

// ------------------------------------------------------------------------------ table
function renderTable(model, el) {
  const { body, info } = frame(model, el, "table");
  const table = element("table", "livenb-grid");
  const thead = element("thead");
  const tbody = element("tbody");
  table.append(thead, tbody);
  body.append(table);
  let columns = [];
  let rows = [];
  let position = null; // rows held up to this position (null: nothing yet)
  let limit = 20;
  let updated = null;

  const draw = scheduler(() => {
    const head = element("tr");
    const newest = rows[rows.length - 1] || {};
    for (const name of columns) {  // numbers are right-aligned, their headers too
      head.append(element("th", typeof newest[name] === "number" ? "livenb-num" : "", name));
    }
    thead.replaceChildren(head);
    const lines = [];
    for (let i = rows.length - 1; i >= 0; i--) {  // newest first
      const tr = element("tr");
      for (const name of columns) {
        const value = rows[i][name];
        const text = name === "ts" ? formatTime(value) : formatValue(value);
        const td = element("td", typeof value === "number" ? "livenb-num" : "", text);
        tr.append(td);
      }
      lines.push(tr);
    }
    tbody.replaceChildren(...lines);
    info.textContent = `${position ?? 0} rows received · showing ${rows.length} · updated ${updated ?? "-"}`;
  });

  model.on("msg:custom", (msg) => {
    if (msg.kind !== "rows") return;
    if (!msg.reset && msg.prev !== position) {
      model.send({ type: "resync" });
      return;
    }
    if (msg.reset) {
      rows = [];
      columns = [];
    }
    limit = msg.limit;
    for (const name of msg.columns) if (!columns.includes(name)) columns.push(name);
    for (const values of msg.rows) {
      const row = {};
      msg.columns.forEach((name, i) => { row[name] = values[i]; });
      rows.push(row);
    }
    if (rows.length > limit) rows = rows.slice(rows.length - limit);
    position = msg.n;
    updated = new Date().toLocaleTimeString();
    draw();
  });
  model.send({ type: "hello" });
}

// ------------------------------------------------------------------------------ chart
function niceTicks(lo, hi, count) {
  const span = hi - lo || Math.abs(hi) || 1;
  const step0 = span / count;
  const magnitude = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= step0) || step0;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(t);
  return ticks;
}

function renderChart(model, el) {
  const { body, info } = frame(model, el, "chart");
  const canvas = element("canvas", "livenb-canvas");
  const legend = element("div", "livenb-legend");
  body.append(canvas, legend);
  const height = model.get("height") || 300;
  let xs = [];
  let series = {};
  let xName = "ts";
  let position = null;
  let maxPoints = 2000;
  let mode = "lines";

  const draw = scheduler(() => {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(200, body.clientWidth || 600);
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const names = Object.keys(series);
    legend.replaceChildren(...names.map((name, i) => {
      const item = element("span", "livenb-key", name);
      item.style.setProperty("--livenb-color", PALETTE[i % PALETTE.length]);
      return item;
    }));
    info.textContent = `${position ?? 0} rows received · ${xs.length} points`;
    if (xs.length === 0) return;
    let yLo = Infinity;
    let yHi = -Infinity;
    for (const name of names) {
      for (const y of series[name]) {
        if (y === null) continue;
        if (y < yLo) yLo = y;
        if (y > yHi) yHi = y;
      }
    }
    if (!isFinite(yLo)) return;
    const pad = (yHi - yLo) * 0.05 || Math.abs(yHi) * 0.05 || 1;
    yLo -= pad;
    yHi += pad;
    let xLo = Infinity;
    let xHi = -Infinity;
    for (const x of xs) {
      if (x === null) continue;
      if (x < xLo) xLo = x;
      if (x > xHi) xHi = x;
    }
    if (!isFinite(xLo)) return;
    if (mode === "markers") {  // a scatter gets a margin, lines run edge to edge
      const margin = (xHi - xLo) * 0.05 || 1;
      xLo -= margin;
      xHi += margin;
    }
    if (xHi === xLo) xHi = xLo + 1;
    const left = 64, right = 12, top = 10, bottom = 26;
    const plotW = width - left - right;
    const plotH = height - top - bottom;
    const px = (x) => left + ((x - xLo) / (xHi - xLo)) * plotW;
    const py = (y) => top + (1 - (y - yLo) / (yHi - yLo)) * plotH;
    ctx.font = "11px sans-serif";
    ctx.fillStyle = "#666";
    ctx.strokeStyle = "#e5e5e5";
    ctx.lineWidth = 1;
    for (const t of niceTicks(yLo, yHi, 5)) {
      ctx.beginPath();
      ctx.moveTo(left, py(t));
      ctx.lineTo(left + plotW, py(t));
      ctx.stroke();
      ctx.textAlign = "right";
      ctx.fillText(formatValue(Number(t.toPrecision(6))), left - 6, py(t) + 4);
    }
    ctx.textAlign = "center";
    for (const t of niceTicks(xLo, xHi, 5)) {
      ctx.fillText(xName === "ts" ? formatTime(t).slice(0, 8) : formatValue(Number(t.toPrecision(6))), px(t), height - 8);
    }
    names.forEach((name, i) => {
      const ys = series[name];
      if (mode === "markers") {
        ctx.fillStyle = PALETTE[i % PALETTE.length];
        for (let k = 0; k < xs.length; k++) {
          if (ys[k] === null || ys[k] === undefined || xs[k] === null) continue;
          ctx.beginPath();
          ctx.arc(px(xs[k]), py(ys[k]), 3, 0, 2 * Math.PI);
          ctx.fill();
        }
        return;
      }
      ctx.strokeStyle = PALETTE[i % PALETTE.length];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let drawing = false;
      for (let k = 0; k < xs.length; k++) {
        if (ys[k] === null || ys[k] === undefined) { drawing = false; continue; }
        if (drawing) ctx.lineTo(px(xs[k]), py(ys[k]));
        else ctx.moveTo(px(xs[k]), py(ys[k]));
        drawing = true;
      }
      ctx.stroke();
    });
  });

  model.on("msg:custom", (msg) => {
    if (msg.kind !== "points") return;
    if (!msg.reset && msg.prev !== position) {
      model.send({ type: "resync" });
      return;
    }
    maxPoints = msg.max_points;
    xName = msg.x_name;
    mode = msg.mode || "lines";
    if (msg.reset) {
      xs = [];
      series = {};
    }
    const before = xs.length;
    for (const name of Object.keys(msg.series)) {
      if (!(name in series)) series[name] = new Array(before).fill(null);
    }
    xs.push(...msg.x);
    for (const name of Object.keys(series)) {
      const values = msg.series[name] || new Array(msg.x.length).fill(null);
      series[name].push(...values);
    }
    let drop = 0;
    if (msg.cutoff !== null) while (drop < xs.length && xs[drop] < msg.cutoff) drop++;
    drop = Math.max(drop, xs.length - maxPoints);
    if (drop > 0) {
      xs = xs.slice(drop);
      for (const name of Object.keys(series)) series[name] = series[name].slice(drop);
    }
    position = msg.n;
    draw();
  });
  new ResizeObserver(draw).observe(body);
  model.send({ type: "hello" });
}

// ------------------------------------------------------------------------------ status
const LABELS = {
  url: "URL", running: "running", connected: "connected", connections: "connections",
  topics: "topics", subscriptions: "subscriptions", rate_in: "records/s in",
  rate_out: "records/s out", records_in: "records in", records_out: "records out",
  records_received: "records received", records_published: "records published",
  latency_ms: "latency (ms)", reconnects: "reconnects", gaps: "gaps", drops: "drops",
  dropped_records: "dropped records", refused: "refused", auth: "auth", idle_s: "idle (s)",
  engine: "Redis engine", engine_waiting: "waiting for Redis",
};

function renderStatus(model, el) {
  const root = element("div", "livenb-widget livenb-status");
  const head = element("div", "livenb-head");
  const title = element("span", "livenb-title", model.get("title"));
  const badge = element("span", "livenb-badge", "…");
  head.append(title, badge);
  const grid = element("dl", "livenb-fields");
  root.append(head, grid);
  el.append(root);
  const fields = {};
  let stale = false;

  const draw = scheduler(() => {
    const items = [];
    for (const [key, value] of Object.entries(fields)) {
      items.push(element("dt", "", LABELS[key] || key));
      items.push(element("dd", `livenb-field-${key}`, formatValue(value)));
    }
    grid.replaceChildren(...items);
    const engineDown = fields.engine !== undefined && fields.engine !== "connected";
    const down = fields.connected === false || fields.running === false || engineDown;
    const downText = engineDown ? `engine ${fields.engine}` : "disconnected";
    badge.textContent = down ? downText : stale ? `stale · no data for ${formatValue(fields.idle_s)} s` : "live";
    badge.className = `livenb-badge ${down ? "livenb-down" : stale ? "livenb-stale" : "livenb-live"}`;
  });

  model.on("msg:custom", (msg) => {
    if (msg.kind !== "status") return;
    Object.assign(fields, msg.fields);
    stale = msg.stale;
    draw();
  });
  model.send({ type: "hello" });
}

const RENDERERS = { table: renderTable, chart: renderChart, status: renderStatus };

export default {
  render({ model, el }) {
    const render = RENDERERS[model.get("view_kind")];
    if (!render) {
      el.textContent = `livenb: unknown widget kind ${model.get("view_kind")}`;
      return undefined;
    }
    render(model, el);  // says hello: the kernel starts sending to this view
    // Removed (a re-run cell, a closed tab): the kernel stops sending when no view is left.
    return () => model.send({ type: "bye" });
  },
};
