// Overlay line chart on Canvas 2D, after uPlot's model: backing store = CSS size x
// devicePixelRatio; setters only mark the chart dirty and one draw happens per animation frame
// (Scheduler, in scheduler.js); per-pixel-column min/max decimation; the crosshair, selection
// box and tooltip are DOM overlays, so hovering never repaints the canvas.

import { drawAxes, drawMarkers } from "./chartparts.js";
import { fmtClock, fmtDuration, fmtInt } from "./format.js";
import { BlockIndex, decimate, emaInto, nearest } from "./series.js";
import { CrosshairOverlay } from "./overlay.js";
import { el } from "./dom.js";
import { colors } from "./theme.js";

// glow is a shadowBlur pass per line; past this many lines only the focused run glows
const GLOW_MAX_LINES = 8;
const X_LABEL = { step: "step", rel: "time since start", wall: "wall time" };
const SERIES_FIELDS = ["key", "label", "color", "buf", "xOffset", "dash", "width", "focused", "dots"];
const MARKER_FIELDS = ["kind", "x", "color"];

// Two lists of inputs hold the same things (the fields compared by identity).
function sameList(a, b, fields) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 1) {
    for (const f of fields) if (a[i][f] !== b[i][f]) return false;
  }
  return true;
}

export class Chart {
  constructor(host, { id, title, unit, yFormat, scheduler, onZoom, onReset, onHover }) {
    this.scheduler = scheduler;
    this.yFormat = yFormat;
    this.onZoom = onZoom;
    this.onReset = onReset;
    this.series = [];
    this.markers = [];
    this.smoothing = 0;
    this.logY = false;
    this.xMode = "step";
    this.view = null; // {x0, x1} in display units, or null = everything
    this.emaCache = new Map();
    this.scratch = new Map(); // per series key: {cols} reused between draws
    this.drawTimes = new Float64Array(512);
    this.drawCount = 0;
    this.last = null; // what the last draw used, for hover, zoom and tests

    this.el = document.createElement("section");
    this.el.className = "panel chart";
    this.el.dataset.chart = id;
    const head = document.createElement("header");
    const h = document.createElement("h2");
    h.textContent = title;
    const u = el("span", "unit");
    u.textContent = unit;
    this.head = head;
    head.append(h, u);
    this.plot = document.createElement("div");
    this.plot.className = "plot";
    this.canvas = document.createElement("canvas");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", `${title} chart (${unit}); drag to zoom, double-click to reset`);
    this.plot.append(this.canvas);
    this.el.append(head, this.plot);
    host.append(this.el);
    this.ctx = this.canvas.getContext("2d");
    this.overlay = new CrosshairOverlay(this.plot, {
      geometry: () => this.last,
      onHover: (x) => onHover && onHover(x),
      onZoom: (a, b) => this.onZoom && this.onZoom(a, b),
      onReset: () => this.onReset && this.onReset(),
      tooltip: (x) => this.tooltipAt(x),
      xLabel: (x) => this.xLabel(x),
    });
    this.dpr = window.devicePixelRatio || 1;
    this.cssW = 0;
    this.cssH = 0;
    this.resizeObs = new ResizeObserver(() => this.resize());
    this.resizeObs.observe(this.plot);
    this.watchDpr();
  }

  // A ratio change (zoom, moving the window to another screen) needs a new backing store.
  watchDpr() {
    const mq = window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`);
    mq.addEventListener(
      "change",
      () => {
        this.resize();
        this.watchDpr();
      },
      { once: true },
    );
  }

  resize() {
    const r = this.plot.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(10, Math.floor(r.width));
    const h = Math.max(10, Math.floor(r.height));
    if (w === this.cssW && h === this.cssH && dpr === this.dpr) return;
    this.cssW = w;
    this.cssH = h;
    this.dpr = dpr;
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${h}px`;
    this.invalidate();
  }

  invalidate() {
    this.scheduler.request(this);
  }

  // Buttons in the header choosing what the chart shows (the app decides what that means).
  addToggle(labels, active, onPick) {
    const box = el("span", "toggle");
    const buttons = labels.map((label, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.dataset.variant = String(i);
      b.classList.toggle("on", i === active);
      b.addEventListener("click", () => {
        buttons.forEach((o) => o.classList.toggle("on", o === b));
        onPick(i);
      });
      return b;
    });
    box.append(...buttons);
    this.head.append(box);
  }

  // [{key, label, color, buf: SeriesBuf, xOffset, dash, width, focused, dots}]
  // The app hands every chart its inputs after any data change; a chart whose lines hold the
  // same buffers with the same counts is not drawn again.
  setSeries(list) {
    // counts as of the last call: the buffers themselves are the same objects as they grow
    const counts = list.map((s) => [s.buf.n, s.buf.version]);
    const seen = this.seriesCounts || [];
    const same =
      sameList(this.series, list, SERIES_FIELDS) &&
      counts.every(([n, v], i) => seen[i][0] === n && seen[i][1] === v);
    this.series = list;
    this.seriesCounts = counts;
    if (same) return;
    const keys = new Set(list.map((s) => s.key));
    for (const k of this.emaCache.keys()) if (!keys.has(k)) this.emaCache.delete(k);
    for (const k of this.scratch.keys()) if (!keys.has(k)) this.scratch.delete(k);
    this.invalidate();
  }

  // [{kind: "nonfinite"|"spike"|"checkpoint"|"restart", x, color?}] in display units
  setMarkers(list) {
    const same = sameList(this.markers, list, MARKER_FIELDS);
    this.markers = list;
    if (!same) this.invalidate();
  }

  setOptions({ smoothing, logY, xMode }) {
    if (smoothing !== undefined) this.smoothing = smoothing;
    if (logY !== undefined) this.logY = logY;
    if (xMode !== undefined) this.xMode = xMode;
    this.invalidate();
  }

  setView(view) {
    this.view = view;
    this.invalidate();
  }

  setCursor(x) {
    this.overlay.showLine(x);
  }

  smoothed(s) {
    const buf = s.buf;
    let c = this.emaCache.get(s.key);
    if (!c || c.buf !== buf || c.version !== buf.version || c.w !== this.smoothing || c.state.i > buf.n) {
      c = {
        buf, version: buf.version, w: this.smoothing, out: new Float64Array(buf.x.length),
        state: { last: 0, count: 0, i: 0 }, bi: new BlockIndex(),
      };
      this.emaCache.set(s.key, c);
    }
    if (c.out.length < buf.n) {
      const bigger = new Float64Array(buf.x.length);
      bigger.set(c.out.subarray(0, c.state.i));
      c.out = bigger;
    }
    emaInto(buf.y, buf.n, this.smoothing, c.out, c.state);
    return c.out;
  }

  extent() {
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of this.series) {
      const b = s.buf;
      if (b.n === 0) continue;
      if (b.sorted) {
        lo = Math.min(lo, b.x[0] - s.xOffset);
        hi = Math.max(hi, b.x[b.n - 1] - s.xOffset);
      } else {
        for (let i = 0; i < b.n; i += 1) {
          lo = Math.min(lo, b.x[i] - s.xOffset);
          hi = Math.max(hi, b.x[i] - s.xOffset);
        }
      }
    }
    if (!Number.isFinite(lo)) return { x0: 0, x1: 1 };
    if (hi - lo < 1e-9) return { x0: lo - 1, x1: hi + 1 };
    return { x0: lo, x1: hi };
  }

  draw() {
    const t0 = performance.now();
    // the matchMedia listener catches ratio changes; this catches any it missed (emulation)
    if (this.cssW === 0 || (window.devicePixelRatio || 1) !== this.dpr) this.resize();
    const { ctx, dpr } = this;
    const W = this.canvas.width;
    const H = this.canvas.height;
    const font = `${Math.round(11 * dpr)}px ui-monospace, "DejaVu Sans Mono", monospace`;
    ctx.font = font;
    const left = Math.round(62 * dpr);
    const right = W - Math.round(10 * dpr);
    const top = Math.round(12 * dpr);
    const bottom = H - Math.round(24 * dpr);
    const pw = Math.max(1, right - left);
    const ph = Math.max(1, bottom - top);
    const { x0, x1 } = this.view || this.extent();
    const pxPerX = pw / (x1 - x0);

    // pass 1: decimate every line into pixel columns; collect the y range and non-finite xs
    const smoothing = this.smoothing > 0;
    const lines = [];
    const nonfinite = [];
    let ymin = Infinity;
    let ymax = -Infinity;
    let points = 0;
    for (const s of this.series) {
      const b = s.buf;
      if (b.n === 0) continue;
      let sc = this.scratch.get(s.key);
      if (!sc) {
        sc = { raw: { cols: new Float64Array(4096) }, sm: { cols: new Float64Array(4096) } };
        this.scratch.set(s.key, sc);
      }
      const nf = [];
      const bi = b.sorted ? b.blocks() : null;
      const m = decimate(b.x, b.y, b.n, b.sorted, x0, x1, pxPerX, s.xOffset, sc.raw, this.logY, nf, bi);
      let ms = 0;
      if (smoothing) {
        const sy = this.smoothed(s);
        const sbi = b.sorted ? this.emaCache.get(s.key).bi.update(sy, b.n) : null;
        ms = decimate(b.x, sy, b.n, b.sorted, x0, x1, pxPerX, s.xOffset, sc.sm, this.logY, null, sbi);
      }
      for (const x of nf) nonfinite.push({ x, color: s.color });
      const cols = sc.raw.cols;
      for (let i = 1; i < 2 * m; i += 2) {
        const v = cols[i];
        if (v < ymin) ymin = v;
        if (v > ymax) ymax = v;
      }
      points += m;
      lines.push({ s, m, ms, sc });
    }
    if (!Number.isFinite(ymin)) {
      ymin = this.logY ? -1 : 0;
      ymax = this.logY ? 0 : 1;
    }
    // flat (relative to the values: a constant 10240 tokens/s with float noise is flat too)
    if (ymax - ymin < 1e-9 * Math.max(1, Math.abs(ymin), Math.abs(ymax))) {
      const pad = Math.abs(ymax) * 0.1 || 1;
      ymin -= pad;
      ymax += pad;
    } else {
      const pad = (ymax - ymin) * 0.06;
      ymin -= pad;
      ymax += pad;
    }
    const tDecimated = performance.now();
    const yScale = ph / (ymax - ymin);
    const py = (v) => bottom - (v - ymin) * yScale;

    const c = colors();
    ctx.fillStyle = c.panel;
    ctx.fillRect(0, 0, W, H);
    if (lines.length) drawAxes(this, { left, right, top, bottom, x0, x1, ymin, ymax, pxPerX, py, dpr });
    else {
      // no ticks for an empty chart: made-up axes would read as data
      ctx.strokeStyle = c.grid;
      ctx.lineWidth = 1;
      ctx.setLineDash([]);
      ctx.strokeRect(left + 0.5, top + 0.5, pw, ph);
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top - 2 * dpr, pw, ph + 4 * dpr);
    ctx.clip();
    ctx.lineJoin = "bevel"; // cheaper than round at thousands of joints, same look at 1-2 px
    // glow: a shadowBlur pass per line while few lines are overlaid; past that only the focused
    // line stands out, with a wide faint halo stroke (a blur over a busy chart costs a frame)
    const blurAll = lines.length <= GLOW_MAX_LINES;
    for (const { s, m, ms, sc } of lines) {
      const glow = blurAll ? "blur" : s.focused ? "halo" : null;
      if (smoothing) {
        // the raw line stays visible, faint, behind the smoothed one
        this.strokeCols(sc.raw.cols, m, left, py, s, 0.22, 1, null);
        this.strokeCols(sc.sm.cols, ms, left, py, s, 1, s.width || 1.5, glow);
      } else {
        this.strokeCols(sc.raw.cols, m, left, py, s, 1, s.width || 1.5, glow);
      }
      if (s.dots && m < 400) this.drawDots(sc.raw.cols, m, left, py, s);
    }
    ctx.restore();

    if (lines.length === 0) {
      ctx.fillStyle = c.dim;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("no data for the overlaid runs", left + pw / 2, top + ph / 2);
    }
    const drawnMarkers = drawMarkers(this, { left, right, top, bottom, x0, pxPerX, nonfinite, dpr });
    ctx.fillStyle = c.dim;
    ctx.textAlign = "right";
    ctx.textBaseline = "alphabetic";
    ctx.fillText(X_LABEL[this.xMode] || "", right, H - Math.round(2 * dpr));

    this.last = {
      x0, x1, ymin, ymax, logY: this.logY, left: left / dpr, top: top / dpr, width: pw / dpr,
      height: ph / dpr, points, lines: lines.length, markers: drawnMarkers,
      smoothing: this.smoothing, xMode: this.xMode, decimateMs: tDecimated - t0,
    };
    const dt = performance.now() - t0;
    this.drawTimes[this.drawCount % this.drawTimes.length] = dt;
    this.drawCount += 1;
  }

  strokeCols(cols, m, left, py, s, alpha, width, glow) {
    const { ctx, dpr } = this;
    ctx.beginPath();
    let pen = false;
    for (let i = 0; i < 2 * m; i += 2) {
      const v = cols[i + 1];
      if (v !== v) {
        pen = false;
        continue;
      }
      const X = left + cols[i];
      const Y = py(v);
      if (pen) ctx.lineTo(X, Y);
      else {
        ctx.moveTo(X, Y);
        pen = true;
      }
    }
    ctx.strokeStyle = s.color;
    ctx.setLineDash(s.dash ? s.dash.map((d) => d * dpr) : []);
    if (glow === "halo") {
      ctx.globalAlpha = 0.25 * alpha;
      ctx.lineWidth = (width + 4) * dpr;
      ctx.stroke();
    }
    ctx.globalAlpha = alpha;
    ctx.lineWidth = width * dpr;
    if (glow === "blur") {
      ctx.shadowBlur = 6 * dpr;
      ctx.shadowColor = s.color;
    }
    ctx.stroke();
    if (glow === "blur") ctx.shadowBlur = 0;
    ctx.globalAlpha = 1;
  }

  drawDots(cols, m, left, py, s) {
    const { ctx, dpr } = this;
    ctx.fillStyle = s.color;
    ctx.beginPath();
    for (let i = 0; i < 2 * m; i += 2) {
      const v = cols[i + 1];
      if (v !== v) continue;
      const X = left + cols[i];
      const Y = py(v);
      ctx.moveTo(X + 2.5 * dpr, Y);
      ctx.arc(X, Y, 2.5 * dpr, 0, Math.PI * 2);
    }
    ctx.fill();
  }

  xLabel(x) {
    if (this.xMode === "step") return `step ${fmtInt(x)}`;
    if (this.xMode === "rel") return `${fmtDuration(x)} since start`;
    return fmtClock(x, true);
  }

  // Tooltip rows at data x: every overlaid line's value nearest to x.
  tooltipAt(x) {
    const rows = [];
    for (const s of this.series) {
      const b = s.buf;
      const i = nearest(b.x, b.n, x + s.xOffset, b.sorted);
      if (i < 0) continue;
      const y = this.smoothing > 0 ? this.smoothed(s)[i] : b.y[i];
      rows.push({ label: s.label, color: s.color, value: this.yFormat(y), x: b.x[i] - s.xOffset });
    }
    return rows;
  }

  // Redraw timings and what was drawn, for tests and the benchmark.
  // Width of the backing store in device pixels.
  pixelWidth() {
    return this.canvas.width;
  }

  state() {
    const n = Math.min(this.drawCount, this.drawTimes.length);
    return {
      ...this.last,
      view: this.view,
      draws: this.drawCount,
      drawTimes: Array.from(this.drawTimes.subarray(0, n)),
      series: this.series.map((s) => ({
        key: s.key, n: s.buf.n, next: s.buf.next,
        first: s.buf.n ? s.buf.x[0] : null, last: s.buf.n ? s.buf.x[s.buf.n - 1] : null,
      })),
    };
  }
}
