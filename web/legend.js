// A legend under a chart: one entry per run (or group) drawn, in its colour. Moving the mouse
// over the chart marks the entry of the line nearest the pointer (DOM only: the canvas is not
// repainted for hover); moving it over an entry asks the app to make that run stand out on
// every chart.

import { el } from "./dom.js";
import { inert } from "./format.js";
import { nearest } from "./series.js";

export const MAX_ENTRIES = 40;

export class Legend {
  constructor(chart, { onHover }) {
    this.chart = chart;
    this.onHover = onHover;
    this.root = el("div", "legend");
    chart.el.append(this.root);
    this.entries = new Map(); // run -> element
    this.sig = "";
    this.hot = null; // run under the pointer on the chart
    this.series = [];
    chart.plot.addEventListener("mousemove", (ev) => this.hoverChart(ev));
    chart.plot.addEventListener("mouseleave", () => this.setHot(null));
  }

  // The chart's series: [{run, runLabel, color, ...}]; one entry per distinct run.
  set(series) {
    this.series = series;
    const runs = [];
    const seen = new Set();
    for (const s of series) {
      if (seen.has(s.run)) continue;
      seen.add(s.run);
      runs.push(s);
    }
    const sig = runs.map((s) => `${s.run}\u0000${s.runLabel}\u0000${s.color}`).join("\u0001");
    if (sig === this.sig) return;
    this.sig = sig;
    this.root.textContent = "";
    this.entries = new Map();
    for (const s of runs.slice(0, MAX_ENTRIES)) {
      const item = el("span", "lg-item");
      item.dataset.run = s.run;
      const sw = el("span", "swatch");
      sw.style.background = s.color;
      const name = el("span", "lg-name");
      name.textContent = inert(s.runLabel || s.label);
      item.title = inert(s.runLabel || s.label);
      item.append(sw, name);
      item.addEventListener("mouseenter", () => this.onHover(s.run));
      item.addEventListener("mouseleave", () => this.onHover(null));
      this.root.append(item);
      this.entries.set(s.run, item);
    }
    if (runs.length > MAX_ENTRIES) {
      const more = el("span", "lg-more");
      more.textContent = `+${runs.length - MAX_ENTRIES} more`;
      this.root.append(more);
    }
    this.markHot();
  }

  // The entry of the line nearest to the pointer, in pixels, among the lines at its x.
  hoverChart(ev) {
    const g = this.chart.last;
    if (!g || !this.series.length) return;
    const box = this.chart.plot.getBoundingClientRect();
    const px = ev.clientX - box.left - g.left;
    const pyCss = ev.clientY - box.top - g.top;
    if (px < 0 || px > g.width || pyCss < 0 || pyCss > g.height) {
      this.setHot(null);
      return;
    }
    const x = g.x0 + (px / g.width) * (g.x1 - g.x0);
    let best = null;
    let bestD = Infinity;
    for (const s of this.series) {
      const b = s.buf;
      const i = nearest(b.x, b.n, x + s.xOffset, b.sorted);
      if (i < 0) continue;
      let v = b.y[i];
      if (g.logY) v = v > 0 ? Math.log10(v) : NaN;
      if (!Number.isFinite(v)) continue;
      const y = g.height - ((v - g.ymin) / (g.ymax - g.ymin)) * g.height;
      const d = Math.abs(y - pyCss);
      if (d < bestD) {
        bestD = d;
        best = s.run;
      }
    }
    this.setHot(best);
  }

  setHot(run) {
    if (run === this.hot) return;
    this.hot = run;
    this.markHot();
  }

  markHot() {
    for (const [run, item] of this.entries) item.classList.toggle("hot", run === this.hot);
  }

  stats() {
    return { entries: [...this.entries.keys()], hot: this.hot, total: this.sig ? this.sig.split("\u0001").length : 0 };
  }
}
