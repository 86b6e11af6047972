// Efficiency in the page: MFU, J/token and kWh cells in the stat bar, and the reason when one is
// unknown (the summary's `efficiency_note`), shown under the stats and inside the efficiency
// chart while it has nothing to draw. docs/efficiency.md says how the numbers are made.

import { el } from "./dom.js";
import { fmtNum, inert } from "./format.js";

export const MFU_SERIES = "efficiency/mfu";
export const JPT_SERIES = "efficiency/joules_per_token";

// MFU is a fraction of the devices' summed peak; shown as a percentage
export function fmtMfu(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "\u2014";
  return `${fmtNum(v * 100, 3)}%`;
}

const CELLS = [
  ["mfu", "MFU", (s) => fmtMfu(s.mfu)],
  ["jpt", "J/TOKEN", (s) => fmtNum(s.joules_per_token, 3)],
  ["kwh", "ENERGY kWh", (s) => fmtNum(s.energy_kwh, 3)],
];

export class EfficiencyView {
  // stats: the stat bar's grid (#stats); chart: the efficiency chart's section element
  constructor(stats, chart) {
    this.cells = {};
    for (const [key, label] of CELLS) {
      const l = el("span", "label");
      l.textContent = label;
      const v = el("span", "value");
      v.dataset.stat = key;
      stats.append(el("div", "stat eff", l, v));
      this.cells[key] = v;
    }
    this.note = el("div", "note eff-note");
    this.note.id = "eff-note";
    stats.after(this.note);
    this.empty = el("div", "chart-empty");
    chart.querySelector(".plot").append(this.empty);
    this.shown = { note: "", empty: "" };
  }

  // s: the focused run's summary or null; points: whether the chart holds efficiency points of
  // the run (its own series, or none yet); simulated: the GPUs are the fake backend's
  render(s, points, simulated) {
    // the note names hosts and devices, which come from the run's files and the drivers
    const why = s && s.efficiency_note ? inert(s.efficiency_note) : "";
    for (const [key, , fmt] of CELLS) {
      const v = this.cells[key];
      v.textContent = s ? fmt(s) : "\u2014";
      v.title = why;
    }
    let note = "";
    if (why) note = `efficiency unknown: ${why}`;
    else if (s && simulated && s.energy_kwh !== null) note = "efficiency from SIMULATED GPUs (fake backend)";
    this.note.textContent = note;
    this.note.classList.toggle("on", !!note);
    let empty = "";
    if (s && !points) {
      empty = why
        ? `no efficiency points: ${why}`
        : "no efficiency interval complete yet (each spans 10 s or more of training on a GPU)";
    }
    this.empty.textContent = empty;
    this.empty.classList.toggle("on", !!empty);
    this.shown = { note, empty };
  }

  stats() {
    return { ...this.shown, cells: Object.fromEntries(Object.entries(this.cells).map(([k, v]) => [k, v.textContent])) };
  }
}
