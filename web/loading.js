// Runs whose backlog the daemon is still reading: their summary carries `loading: {bytes,
// total}` and no points yet (docs/protocol.md). The sidebar row, the stat bar and the chart
// area say "loading 43 %" for them; the points come with the run's next generation.

import { el } from "./dom.js";

const NOTE_NAMES = 4; // runs named in the chart-area note; the rest are counted

// The percentage read (0-100, floored), or null when the run is not loading.
export function loadingPct(s) {
  const l = s && s.loading;
  if (!l) return null;
  const total = Number(l.total);
  const done = Number(l.bytes);
  if (!(total > 0) || !Number.isFinite(done)) return 0;
  return Math.max(0, Math.min(100, Math.floor((100 * done) / total)));
}

export function loadingText(s) {
  const p = loadingPct(s);
  return p === null ? null : `loading ${p} %`;
}

// One line above the charts naming the runs on screen that are still loading.
export class LoadingNote {
  constructor(charts) {
    this.node = el("div", "loading-note");
    this.node.setAttribute("role", "status");
    charts.before(this.node);
    this.text = "";
  }

  render(summaries) {
    const loading = summaries.filter((s) => s && s.loading);
    let text = "";
    if (loading.length) {
      const named = loading.slice(0, NOTE_NAMES).map((s) => `${s.name || s.id} ${loadingText(s)}`);
      const rest = loading.length - named.length;
      text = named.join(" \u00b7 ") + (rest > 0 ? ` \u00b7 ${rest} more loading` : "");
    }
    if (text === this.text) return;
    this.text = text;
    this.node.textContent = text;
    this.node.classList.toggle("on", text !== "");
  }
}
