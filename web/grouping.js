// Grouping runs: by a config key or by a regex capture on the run name, each group drawn as one
// mean line with a band (min-max or +-std across its members). Pure functions and a cache; no
// DOM. The app hands its per-run chart inputs to `Grouper.apply`, which returns the group lines.
//
// The mean is taken on a grid of GRID points across the x range shown (the zoom, or all the
// members' data), in display units (step, or seconds since each run's start, or wall time). A
// member contributes at a grid point the mean of its points nearest to it, or a linear
// interpolation between its neighbouring grid points where it has none (sparse eval points), and
// nothing outside its own x range, so a shorter run does not drag the mean at the end. Non-finite
// values are left out of the mean (their markers stay on the chart).

import { SeriesBuf, emaInto } from "./series.js";
import { inert } from "./format.js";
import { runColor } from "./theme.js";
import { valueText } from "./configs.js";

export const GRID = 400;
export const BANDS = ["minmax", "std"];

// Parse a grouping from its link form ("key:lr", "re:(.*)-seed\d+"); null when off or invalid.
export function parseGroup(text) {
  if (typeof text !== "string") return null;
  const i = text.indexOf(":");
  if (i < 0) return null;
  const by = text.slice(0, i);
  const value = text.slice(i + 1);
  if (!value || (by !== "key" && by !== "re")) return null;
  if (by === "re") {
    try {
      new RegExp(value);
    } catch (err) {
      return null;
    }
  }
  return { by, value };
}

export function groupText(spec) {
  return spec ? `${spec.by}:${spec.value}` : "";
}

// The group label of a run, or null when the run stays on its own (a regex that does not
// match). configOf(id) gives the run's flattened config (or null while unknown).
export function groupOf(spec, summary, configOf) {
  if (spec.by === "key") {
    const cfg = configOf(summary.id);
    const has = cfg && Object.prototype.hasOwnProperty.call(cfg, spec.value);
    return `${spec.value}=${has ? valueText(cfg[spec.value], 24) : "\u2014"}`;
  }
  let re;
  try {
    re = new RegExp(spec.value);
  } catch (err) {
    return null;
  }
  const m = re.exec(summary.name || summary.id);
  if (!m) return null;
  return m.length > 1 && m[1] !== undefined ? m[1] : m[0];
}

// Mean, low and high of the members on a grid across [x0, x1]. members: [{buf, xOffset, y}]
// where y (optional) replaces buf.y (a smoothed copy). Returns {mean, lo, hi} SeriesBufs holding
// the grid points where at least one member has a value, with `counts` per point.
export function aggregate(members, x0, x1, band, grid = GRID) {
  const n = Math.max(2, grid);
  const step = (x1 - x0) / (n - 1);
  const sum = new Float64Array(n);
  const sum2 = new Float64Array(n);
  const min = new Float64Array(n).fill(Infinity);
  const max = new Float64Array(n).fill(-Infinity);
  const cnt = new Uint32Array(n);
  const acc = new Float64Array(n);
  const hits = new Uint32Array(n);
  for (const m of members) {
    const { buf } = m;
    const ys = m.y || buf.y;
    const off = m.xOffset || 0;
    acc.fill(0);
    hits.fill(0);
    let first = n;
    let last = -1;
    for (let i = 0; i < buf.n; i += 1) {
      const x = buf.x[i] - off;
      if (!(x >= x0 - step / 2 && x <= x1 + step / 2)) continue;
      const v = ys[i];
      if (!Number.isFinite(v)) continue;
      const k = Math.min(n - 1, Math.max(0, Math.round((x - x0) / step)));
      acc[k] += v;
      hits[k] += 1;
      if (k < first) first = k;
      if (k > last) last = k;
    }
    let prev = -1;
    for (let k = first; k <= last; k += 1) {
      if (!hits[k]) continue;
      const v = acc[k] / hits[k];
      if (prev >= 0 && k - prev > 1) {
        // a gap inside the member's range: interpolate between its neighbours
        const pv = acc[prev] / hits[prev];
        for (let j = prev + 1; j < k; j += 1) add(j, pv + ((v - pv) * (j - prev)) / (k - prev));
      }
      add(k, v);
      prev = k;
    }
  }
  function add(k, v) {
    sum[k] += v;
    sum2[k] += v * v;
    if (v < min[k]) min[k] = v;
    if (v > max[k]) max[k] = v;
    cnt[k] += 1;
  }
  const mean = new SeriesBuf(n);
  const lo = new SeriesBuf(n);
  const hi = new SeriesBuf(n);
  const counts = [];
  for (let k = 0; k < n; k += 1) {
    if (!cnt[k]) continue;
    const x = k === n - 1 ? x1 : x0 + k * step;
    const mu = sum[k] / cnt[k];
    const sd = Math.sqrt(Math.max(0, sum2[k] / cnt[k] - mu * mu));
    mean.push(x, mu);
    lo.push(x, band === "std" ? mu - sd : min[k]);
    hi.push(x, band === "std" ? mu + sd : max[k]);
    counts.push(cnt[k]);
  }
  return { mean, lo, hi, counts };
}

// Turns per-run chart inputs into group lines, caching each group's aggregate until its
// members' data, the range, the band or the smoothing change.
export class Grouper {
  constructor() {
    this.spec = null; // {by: "key"|"re", value}
    this.band = "minmax";
    this.cache = new Map(); // key -> {sig, agg}
    this.ema = new WeakMap(); // SeriesBuf -> {w, version, out, state}
    this.groups = new Map(); // chart id -> [{label, members: [ids]}] of its last apply
  }

  active() {
    return this.spec !== null;
  }

  // A smoothed copy of a member's values (the same EMA the chart draws), kept up to date.
  smoothedY(buf, w) {
    let c = this.ema.get(buf);
    if (!c || c.w !== w || c.version !== buf.version || c.state.i > buf.n || c.out.length < buf.n) {
      c = { w, version: buf.version, out: new Float64Array(buf.x.length), state: { last: 0, count: 0, i: 0 } };
      this.ema.set(buf, c);
    }
    emaInto(buf.y, buf.n, w, c.out, c.state);
    return c.out;
  }

  // series: the chart's per-run inputs (each with `run`, `spec`, `buf`, `xOffset` ...);
  // ctx: {store, configOf, focused, view, smoothing, chartId}.
  apply(series, { store, configOf, focused, view, smoothing, chartId }) {
    const byGroup = new Map(); // label -> {ids: Set, specs: Map(name -> [series])}
    const out = [];
    for (const s of series) {
      const summary = store.summary(s.run);
      const label = summary ? groupOf(this.spec, summary, configOf) : null;
      if (label === null) {
        out.push(s);
        continue;
      }
      let g = byGroup.get(label);
      if (!g) {
        g = { ids: new Set(), specs: new Map() };
        byGroup.set(label, g);
      }
      g.ids.add(s.run);
      if (!g.specs.has(s.spec)) g.specs.set(s.spec, []);
      g.specs.get(s.spec).push(s);
    }
    const used = new Set();
    const groups = [];
    for (const [label, g] of [...byGroup].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
      const run = `group:${label}`;
      const color = runColor(run);
      const ids = [...g.ids].sort();
      groups.push({ label, members: ids });
      for (const [name, members] of g.specs) {
        const proto = members[0];
        const range = view || extentOf(members);
        if (!range) continue;
        const key = `${chartId}\u0000${label}\u0000${name}`;
        const sig = [
          range.x0, range.x1, this.band, smoothing,
          ...members.map((m) => `${m.run}:${m.buf.n}:${m.buf.version}:${m.xOffset}`),
        ].join("|");
        let hit = this.cache.get(key);
        if (!hit || hit.sig !== sig) {
          const input = members.map((m) => ({
            buf: m.buf, xOffset: m.xOffset, y: smoothing > 0 ? this.smoothedY(m.buf, smoothing) : null,
          }));
          const agg = aggregate(input, range.x0, range.x1, this.band);
          // one band object per aggregate: the chart compares its inputs by identity
          hit = { sig, mean: agg.mean, band: { lo: agg.lo, hi: agg.hi } };
          this.cache.set(key, hit);
        }
        used.add(key);
        const isFocused = ids.includes(focused);
        out.push({
          key, run, runLabel: inert(`${label} (${ids.length})`), spec: name,
          label: inert(`${label}${proto.suffix ? ` ${proto.suffix}` : ""}`), // legend, tooltip
          color, buf: hit.mean, band: hit.band, xOffset: 0, dash: proto.dash, dots: proto.dots,
          presmoothed: smoothing > 0, focused: isFocused, width: isFocused ? 2.4 : 1.8,
        });
      }
    }
    for (const k of [...this.cache.keys()]) if (k.startsWith(`${chartId}\u0000`) && !used.has(k)) this.cache.delete(k);
    this.groups.set(chartId, groups);
    return out;
  }
}

// The x range (display units) the members' data covers, or null when they hold nothing.
function extentOf(members) {
  let x0 = Infinity;
  let x1 = -Infinity;
  for (const { buf, xOffset } of members) {
    const off = xOffset || 0;
    if (buf.sorted) {
      if (buf.n) {
        x0 = Math.min(x0, buf.x[0] - off);
        x1 = Math.max(x1, buf.x[buf.n - 1] - off);
      }
      continue;
    }
    for (let i = 0; i < buf.n; i += 1) {
      const x = buf.x[i] - off;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
    }
  }
  if (!(x1 >= x0)) return null;
  return x1 > x0 ? { x0, x1 } : { x0: x0 - 1, x1: x1 + 1 };
}
