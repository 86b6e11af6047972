// What each chart shows, and the lines and markers it gets from the store: pure functions of
// the app's state, kept apart from the wiring in app.js.

import { fmtBytes, fmtLr, fmtNum, fmtRate } from "./format.js";
import { runColor } from "./theme.js";

// What each chart shows; `series` entries are the server's series names.
export const CHARTS = [
  {
    id: "loss", title: "LOSS", unit: "train \u2014  eval \u2010 \u2010 \u25cf", fmt: fmtNum,
    series: [{ name: "loss" }, { name: "eval_loss", dash: [6, 4], dots: true, suffix: "eval" }],
  },
  { id: "lr", title: "LEARNING RATE", unit: "lr", fmt: fmtLr, series: [{ name: "learning_rate" }] },
  { id: "grad", title: "GRAD NORM", unit: "L2 norm, before clipping", fmt: fmtNum, series: [{ name: "grad_norm" }] },
  {
    id: "thru", title: "THROUGHPUT", unit: "", fmt: (v) => fmtRate(v, ""),
    // one y axis, one unit: a toggle picks which rate is shown
    variants: [
      { label: "steps/s", series: [{ name: "steps_per_s" }] },
      { label: "tokens/s", series: [{ name: "tokens_per_s" }] },
    ],
  },
  {
    id: "mem", title: "MEMORY", unit: "bytes \u00b7 allocated \u2014  peak \u2010 \u2010", fmt: fmtBytes,
    series: [{ name: "mem_allocated" }, { name: "mem_peak", dash: [2, 3], suffix: "peak" }],
  },
];
export const seriesOf = (c) => c.series || c.variants.flatMap((v) => v.series);
const MARKER_SERIES_CHART = new Map(CHARTS.flatMap((c) => seriesOf(c).map((s) => [s.name, c.id])));

// Lines and markers of one chart. ctx: {ids (overlaid runs whose buffers hold the current x
// kind), store, focused, xMode, xOffset(id)}.
export function chartInputs(cfg, variant, { ids, store, focused, xMode, xOffset }) {
  const series = [];
  const markers = [];
  const specs = cfg.series || cfg.variants[variant].series;
  for (const id of ids) {
    const s = store.summary(id);
    const color = runColor(id);
    const off = xOffset(id);
    const isFocused = id === focused;
    for (const spec of specs) {
      const buf = store.buf(id, spec.name);
      if (!buf) continue;
      series.push({
        key: `${id}\u0000${spec.name}`,
        label: `${s?.name || id}${spec.suffix ? ` ${spec.suffix}` : ""}`,
        color, buf, xOffset: off, dash: spec.dash, dots: spec.dots, focused: isFocused,
        width: isFocused ? 2.2 : 1.4,
      });
    }
    for (const m of store.markers(id)) {
      // checkpoints and restarts on every chart; values on the chart of their series
      const line = m.kind === "checkpoint" || m.kind === "restart";
      const chartId = MARKER_SERIES_CHART.get(m.series) || "loss";
      if (m.kind === "end" || (!line && chartId !== cfg.id)) continue;
      const x = xMode === "step" ? m.step : xMode === "rel" ? m.t - off : m.t;
      if (x === null || !Number.isFinite(x)) continue;
      markers.push({ kind: m.kind, x, color });
    }
  }
  return { series, markers };
}
