// The dashboard: state and wiring. Messages and user input only change state and mark things
// dirty; drawing happens once per animation frame (Scheduler).

import { decodeSummary, fetchGpus, num } from "./api.js";
import { Chart } from "./chart.js";
import { Compare } from "./compare.js";
import { EfficiencyView, JPT_SERIES, MFU_SERIES } from "./efficiency.js";
import { GpuPanel } from "./gpupanel.js";
import { LogPanel } from "./logpanel.js";
import { LoadingNote } from "./loading.js";
import { LoraPanel } from "./lorapanel.js";
import { DesktopAlerts } from "./notify.js";
import { renderBanner, renderConnection, StatBar, Toasts } from "./panels.js";
import { SamplesPanel } from "./samplespanel.js";
import { Scheduler } from "./scheduler.js";
import { autoFocus, autoOverlay, pointsPerRun } from "./selection.js";
import { Sidebar } from "./sidebar.js";
import { Socket } from "./socket.js";
import { Store } from "./store.js";
import { runColor } from "./theme.js";
import { CHARTS, seriesOf } from "./views.js";

class App {
  constructor() {
    this.scheduler = new Scheduler();
    this.store = new Store({
      wanted: new Set(CHARTS.flatMap((c) => seriesOf(c).map((s) => s.name))),
      onData: (id) => this.dataChanged(id),
    });
    this.selected = new Set();
    this.selectionTouched = false;
    this.focused = null;
    this.focusTouched = false;
    this.receivedAt = new Map();
    this.opts = { smoothing: 0, logY: false, xMode: "step" };
    this.view = null;
    this.snapshots = 0;
    this.ui = { draw: () => this.renderUi() };
    this.dirty = { charts: true, sidebar: true, stat: true, gpu: true, lora: true, samples: true };

    this.sidebar = new Sidebar(document.getElementById("sidebar"), {
      onToggle: (id, on) => this.toggle(id, on),
      onFocus: (id) => this.focus(id, true),
      onFilter: () => {
        this.autoSelect();
        this.selectionChanged();
      },
      onScroll: () => this.mark("sidebar"),
    });
    this.statBar = new StatBar(document.getElementById("statbar"));
    this.banner = document.getElementById("banner");
    this.toasts = new Toasts(document.getElementById("toasts"));
    this.desktop = new DesktopAlerts({
      toggle: document.getElementById("notify-toggle"),
      sound: document.getElementById("notify-sound"),
      onOpen: (id) => this.openRun(id),
    });
    this.linked = null; // a run a link or a notification names, focused once it is known
    this.gpu = new GpuPanel(document.getElementById("gpu-panel"), {
      runName: (id) => this.store.summary(id)?.name || id,
      runColor,
    });
    this.lora = new LoraPanel(document.getElementById("lora-panel"), { schedule: () => this.mark("lora") });
    this.samples = new SamplesPanel(document.getElementById("samples-panel"), { schedule: () => this.mark("samples") });
    this.log = new LogPanel(document.getElementById("log-panel"), {
      openLog: (id) => this.socket.openLogs(id ? [id] : []),
    });
    this.charts = new Map();
    const host = document.getElementById("charts");
    this.loadingNote = new LoadingNote(host);
    this.variant = new Map(); // chart id -> index of the shown variant
    for (const c of CHARTS) {
      const chart = new Chart(host, {
          id: c.id, title: c.title, unit: c.unit, yFormat: c.fmt, scheduler: this.scheduler,
          onZoom: (a, b) => this.zoom(a, b),
          onReset: () => this.resetZoom(),
          onHover: (x) => this.charts.forEach((ch) => ch.setCursor(x)),
      });
      this.charts.set(c.id, chart);
      if (c.variants) {
        this.variant.set(c.id, 0);
        chart.addToggle(c.variants.map((v) => v.label), 0, (i) => {
          this.variant.set(c.id, i);
          this.mark("charts");
        });
      }
    }
    this.eff = new EfficiencyView(document.getElementById("stats"), this.charts.get("eff").el);
    this.connEl = document.getElementById("conn");
    this.socket = new Socket({
      url: wsUrl(),
      onMessage: (m) => this.onMessage(m),
      onState: () => this.renderConn(),
    });
    this.connEl.addEventListener("click", () => this.socket.retryNow());
    this.bindControls();
    // the runs table, grouping, legends, the view in the URL, snapshots (compare.js)
    this.compare = new Compare(this);
    setInterval(() => {
      this.mark("stat");
      this.renderConn();
    }, 1000);
    new ResizeObserver(() => this.mark("lora")).observe(document.getElementById("lora-panel"));
  }

  start() {
    this.socket.start();
    this.loadGpus();
  }

  async loadGpus() {
    try {
      this.gpu.setAll(await fetchGpus());
      this.mark("gpu");
    } catch (err) {
      console.warn(`mudpuppy: /api/gpus failed: ${err.message}`);
    }
  }

  bindControls() {
    const sm = document.getElementById("smoothing");
    const smv = document.getElementById("smoothing-value");
    sm.addEventListener("input", () => {
      this.opts.smoothing = Number(sm.value);
      smv.textContent = this.opts.smoothing.toFixed(2);
      this.applyOpts();
    });
    document.getElementById("log-y").addEventListener("change", (ev) => {
      this.opts.logY = ev.target.checked;
      this.applyOpts();
    });
    document.getElementById("x-mode").addEventListener("change", (ev) => {
      this.opts.xMode = ev.target.value;
      this.resetZoom();
      this.applyOpts();
      this.ensureLoaded();
    });
    document.getElementById("reset-zoom").addEventListener("click", () => this.resetZoom());
    window.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && this.view) this.resetZoom();
    });
    document.getElementById("scanlines").addEventListener("change", (ev) => {
      document.body.classList.toggle("scanlines", ev.target.checked);
    });
  }

  applyOpts() {
    for (const ch of this.charts.values()) ch.setOptions(this.opts);
    this.mark("charts");
  }

  mark(what) {
    this.dirty[what] = true;
    this.scheduler.request(this.ui);
  }

  // -- messages ------------------------------------------------------------------------------

  onMessage(m) {
    switch (m.type) {
      case "snapshot":
        this.onSnapshot(m);
        break;
      case "runs":
        this.onRuns(m.runs || []);
        break;
      case "run_removed":
        this.store.remove(m.id);
        this.selected.delete(m.id);
        if (this.focused === m.id) {
          this.focused = null;
          this.samples.focus(null);
        }
        this.autoSelect();
        this.selectionChanged();
        break;
      case "points":
        this.store.applyPoints(m);
        break;
      case "lora":
        this.lora.addColumn(m);
        break;
      case "samples":
        this.samples.onMessage(m);
        break;
      case "log":
        this.log.apply(m);
        break;
      case "gpus":
        this.gpu.addSample(m);
        this.mark("gpu");
        break;
      case "alert":
        this.onAlert(m);
        break;
      case "news":
        // the notification rules' verdict (as for webhooks): desktop notification, title, tone
        this.desktop.news(m, this.store.summary(m.run)?.name || m.run);
        break;
      default:
        break; // "resync": a snapshot follows
    }
  }

  onSnapshot(m) {
    this.snapshots += 1;
    const runs = (m.runs || []).map(decodeSummary);
    this.store.setSummaries(runs, true);
    const now = performance.now();
    for (const s of runs) this.receivedAt.set(s.id, now);
    if (m.gpus) {
      this.gpu.setAll({ ...m.gpus, history: null });
      this.mark("gpu");
    }
    if (this.snapshots > 1) {
      // Reconnect or resync: the picture must equal a fresh load, so refetch what is held (the
      // runs of the subscription the socket re-sent on open; removed runs are gone already).
      // Forced: a load still in flight was asked of the old connection and misses the outage.
      this.store.reloadAll(this.xKind());
      this.loadGpus();
      this.lora.focus(this.focused, this.hasLora(this.focused));
      this.samples.focus(this.focused, true, this.store.summary(this.focused));
      this.log.reload();
    }
    for (const id of [...this.selected]) if (!this.store.summary(id)) this.selected.delete(id);
    this.autoSelect();
    this.followLink();
    this.selectionChanged();
    this.compare.afterSnapshot();
  }

  onRuns(list) {
    const now = performance.now();
    const fresh = [];
    for (const raw of list) {
      const s = decodeSummary(raw);
      if (this.store.updateSummary(s)) fresh.push(s);
      this.log.summary(s);
      this.receivedAt.set(s.id, now);
      this.sidebar.pushSpark(s.id, s.loss);
      this.samples.onSummary(s);
    }
    if (fresh.length) {
      this.autoSelect();
      this.followLink();
      this.selectionChanged();
    }
    this.mark("sidebar");
    this.mark("stat");
  }

  onAlert(m) {
    const name = this.store.summary(m.run)?.name || m.run;
    this.toasts.show(`${name}: ${m.message}`, m.kind);
    if (m.kind === "nonfinite" || m.kind === "spike") {
      this.store.addMarker(m.run, { kind: m.kind, step: num(m.step), t: num(m.t), series: null });
    }
  }

  // Until the user picks by hand the overlay is the AUTO_OVERLAY most recently active shown
  // runs, chosen again when runs appear or go and when the filter changes (not on every
  // summary, so lines do not come and go while runs log); the newest running run gets the focus.
  autoSelect() {
    const all = this.store.allSummaries();
    if (!this.selectionTouched) this.selected = autoOverlay(all, (s) => this.sidebar.matches(s));
    if (!this.focusTouched || !this.store.summary(this.focused)) {
      const best = autoFocus(all);
      if (best && best.id !== this.focused) this.focus(best.id, false);
    }
  }

  // A link (`#run=<id>`, urlstate.js), a notification clicked: overlays and focuses its run once it is known.
  followLink() {
    const id = this.linked;
    if (!id || !this.store.summary(id)) return;
    this.linked = null;
    this.selected.add(id);
    this.focus(id, true);
  }

  openRun(id) {
    this.linked = id; // the address follows the focus (urlstate.js)
    this.followLink();
  }

  // -- selection, focus, zoom ----------------------------------------------------------------

  toggle(id, on) {
    this.selectionTouched = true;
    const ids = id === null ? this.store.allSummaries().filter((s) => this.sidebar.matches(s)).map((s) => s.id) : [id];
    for (const i of ids) {
      if (on) this.selected.add(i);
      else this.selected.delete(i);
    }
    this.selectionChanged();
  }

  focus(id, byUser) {
    if (byUser) this.focusTouched = true;
    this.focused = id;
    this.selectionChanged(); // the focused run is subscribed (its LoRA columns stream) and loaded
    this.lora.focus(id, this.hasLora(id));
    this.samples.focus(id, false, this.store.summary(id));
    this.log.focus(id);
    this.mark("sidebar");
    this.mark("stat");
    this.mark("charts");
  }

  hasLora(id) {
    return id ? this.store.hasLora(id) : false;
  }

  // The runs the page streams and holds: the overlaid ones and the focused one.
  wantedRuns() {
    const ids = new Set(this.overlaid());
    if (this.focused) ids.add(this.focused);
    return ids;
  }

  overlaid() {
    const out = [];
    for (const id of this.selected) {
      const s = this.store.summary(id);
      if (s && this.sidebar.matches(s)) out.push(id);
    }
    return out.sort();
  }

  selectionChanged() {
    this.store.points = pointsPerRun(this.overlaid().length);
    const subs = this.wantedRuns();
    // The server streams only subscribed runs and sends no catch-up when the subscription
    // changes, so what is held of a run it stops streaming goes stale: drop it, and fetch it
    // afresh when it is wanted again.
    this.store.keepOnly(subs);
    // subscribe first: the stream then covers whatever follows the HTTP answers of the loads
    this.socket.subscribe([...subs].sort());
    this.ensureLoaded();
    this.mark("sidebar");
    this.mark("charts");
    this.mark("stat");
  }

  xKind() {
    return this.opts.xMode === "step" ? "step" : "time";
  }

  ensureLoaded() {
    const kind = this.xKind();
    for (const id of this.wantedRuns()) this.store.ensure(id, kind);
  }

  dataChanged(id) {
    // seed the sidebar sparkline from the loaded loss column the first time
    const b = this.sidebar.hasSpark(id) ? null : this.store.baseBuf(id, "loss");
    if (b) this.sidebar.seedSpark(id, b.y.subarray(Math.max(0, b.n - 60), b.n));
    if (id === this.focused && this.lora.awaitsDetail(id)) {
      this.lora.focus(id, this.hasLora(id));
    }
    // a run loaded while zoomed gets the zoomed range too (asked once per range)
    if (this.view && this.overlaid().includes(id)) this.zoomRuns([id]);
    this.mark("charts");
    this.mark("sidebar");
  }

  zoom(a, b) {
    // below the float resolution of the values there is nothing left to tell apart
    if (!(b - a > 1e-12 * Math.max(1, Math.abs(a), Math.abs(b)))) return;
    this.view = { x0: a, x1: b };
    for (const ch of this.charts.values()) ch.setView(this.view);
    this.zoomRuns(this.overlaid());
    this.mark("charts"); // group lines are computed over the zoomed range
  }

  zoomRuns(ids) {
    const { x0, x1 } = this.view;
    const widthPx = Math.max(...[...this.charts.values()].map((c) => c.pixelWidth()), 800);
    for (const id of ids) {
      const off = this.xOffset(id);
      this.store.loadZoom(id, x0 + off, x1 + off, 2 * widthPx);
    }
  }

  resetZoom() {
    this.view = null;
    this.store.clearZoom();
    for (const ch of this.charts.values()) ch.setView(null);
    this.mark("charts");
  }

  xOffset(id) {
    if (this.opts.xMode !== "rel") return 0;
    const s = this.store.summary(id);
    const t0 = s ? num(s.started_t) : null;
    if (t0 !== null && Number.isFinite(t0)) return t0;
    const b = this.store.buf(id, "loss");
    return b && b.n ? b.x[0] : 0;
  }

  // -- drawing (once per frame) --------------------------------------------------------------

  renderUi() {
    const d = this.dirty;
    if (d.charts) this.updateCharts();
    if (d.sidebar) {
      this.sidebar.render(this.store.summaries, this.selected, this.focused, this.store.listVersion);
      this.sidebar.renderNote(this.overlaid().length, !this.selectionTouched);
      this.loadingNote.render([...this.wantedRuns()].sort().map((id) => this.store.summary(id)));
    }
    if (d.stat) {
      const s = this.store.summary(this.focused);
      this.statBar.render(s, this.receivedAt.get(this.focused) || 0, s ? runColor(s.id) : "");
      renderBanner(this.banner, s);
    }
    if (d.stat || d.charts) {
      const s = this.store.summary(this.focused);
      const points = s && [MFU_SERIES, JPT_SERIES].some((n) => this.store.buf(s.id, n)?.n);
      this.eff.render(s, !!points, this.gpu.stats().simulated);
    }
    if (d.gpu) this.gpu.render();
    if (d.lora) this.lora.draw();
    if (d.samples) this.samples.draw();
    this.compare.frame(d);
    this.dirty = { charts: false, sidebar: false, stat: false, gpu: false, lora: false, samples: false };
  }

  updateCharts() {
    const ids = this.overlaid().filter((id) => this.store.xKindOf(id) === this.xKind());
    const ctx = {
      ids, store: this.store, focused: this.focused, xMode: this.opts.xMode,
      xOffset: (id) => this.xOffset(id),
    };
    for (const cfg of CHARTS) {
      const { series, markers } = this.compare.inputs(cfg, this.variant.get(cfg.id) || 0, ctx);
      const ch = this.charts.get(cfg.id);
      ch.setSeries(series);
      ch.setMarkers(markers);
    }
  }

  renderConn() {
    renderConnection(this.connEl, this.socket.state, this.socket.retryInS());
  }

  // What tests and the benchmark read.
  stats() {
    const charts = {};
    for (const [id, ch] of this.charts) charts[id] = ch.state();
    const store = this.store.stats();
    return {
      conn: this.socket.state,
      snapshots: this.snapshots,
      runs: store.runs,
      shown: this.store.allSummaries().filter((s) => this.sidebar.matches(s)).map((s) => s.id).sort(),
      selected: [...this.selected].sort(),
      overlaid: this.overlaid(),
      focused: this.focused,
      summary: this.store.summary(this.focused),
      banner: this.banner.dataset.kind || "",
      loadingNote: this.loadingNote.text,
      zoomFetches: store.zoomFetches,
      droppedPoints: store.droppedPoints,
      loads: store.loads,
      requests: store.requests,
      held: store.held,
      pending: store.pending,
      view: this.view,
      opts: { ...this.opts },
      charts,
      lora: this.lora.stats(),
      samples: this.samples.stats(),
      log: this.log.stats(),
      gpu: this.gpu.stats(),
      notify: this.desktop.stats(),
      compare: this.compare.stats(),
      efficiency: this.eff.stats(),
    };
  }
}

function wsUrl() {
  const u = new URL("ws", window.location.href);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.href;
}

function main() {
  const app = new App();
  // a small read-only hook for the browser tests and the benchmark
  window.__mudpuppy = {
    app,
    stats: () => app.stats(),
    // the x column held for one series of a run (what the charts draw)
    xs: (id, name) => {
      const b = app.store.buf(id, name);
      return b ? Array.from(b.x.subarray(0, b.n)) : null;
    },
  };
  app.start();
}

main();
