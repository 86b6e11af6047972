// LoRA heatmap: rows = adapter layers, columns = logged steps, colour = log10 of the norm, plus
// the latest value of each layer as a bar on the right. Drawing and hit-testing only.

import { fitCanvas } from "./sparkline.js";
import { colors } from "./theme.js";

// colour stops over [0, 1] of the log-scaled value (dark -> violet -> cyan -> green -> amber)
const STOPS = [
  [0, [16, 24, 40]],
  [0.25, [90, 0, 170]],
  [0.5, [0, 190, 255]],
  [0.75, [57, 255, 20]],
  [1, [255, 215, 0]],
];

export function colormap(f) {
  const t = Math.max(0, Math.min(1, f));
  for (let i = 1; i < STOPS.length; i += 1) {
    const [b, cb] = STOPS[i];
    const [a, ca] = STOPS[i - 1];
    if (t <= b) {
      const u = (t - a) / (b - a);
      return [0, 1, 2].map((k) => Math.round(ca[k] + (cb[k] - ca[k]) * u));
    }
  }
  return STOPS[STOPS.length - 1][1];
}

// Layers whose latest value is near zero: 0, or below 1 % of the median latest value (a LoRA
// B matrix starts at zero; one still there after many steps is not learning).
export function nearZeroLayers(latest) {
  const finite = latest.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (finite.length === 0) return new Set();
  const median = finite[finite.length >> 1];
  const limit = Math.max(1e-8, median * 0.01);
  const out = new Set();
  latest.forEach((v, i) => {
    if (Number.isFinite(v) && Math.abs(v) <= limit) out.add(i);
  });
  return out;
}

export const BAR_FRAC = 0.22;

// m: {layers, steps, rows (layers x steps values)}; returns the geometry for hit-testing.
export function drawHeatmap(canvas, m, cssW, cssH) {
  const dpr = fitCanvas(canvas, cssW, cssH);
  const ctx = canvas.getContext("2d");
  const W = canvas.width;
  const H = canvas.height;
  const c = colors();
  ctx.fillStyle = c.panel;
  ctx.fillRect(0, 0, W, H);
  const nl = m.layers.length;
  const ns = m.steps.length;
  if (nl === 0 || ns === 0) return null;
  let lo = Infinity;
  let hi = -Infinity;
  for (const row of m.rows) {
    for (const v of row) {
      if (Number.isFinite(v) && v > 0) {
        const l = Math.log10(v);
        if (l < lo) lo = l;
        if (l > hi) hi = l;
      }
    }
  }
  if (!Number.isFinite(lo)) {
    lo = -8;
    hi = 0;
  }
  if (hi - lo < 1e-9) lo = hi - 1;
  const img = new ImageData(ns, nl);
  for (let r = 0; r < nl; r += 1) {
    const row = m.rows[r] || [];
    for (let c = 0; c < ns; c += 1) {
      const v = row[c];
      const o = (r * ns + c) * 4;
      let rgb;
      if (!Number.isFinite(v)) rgb = [255, 51, 51]; // non-finite norm: red cell
      else if (v <= 0) rgb = [16, 24, 40];
      else rgb = colormap((Math.log10(v) - lo) / (hi - lo));
      img.data[o] = rgb[0];
      img.data[o + 1] = rgb[1];
      img.data[o + 2] = rgb[2];
      img.data[o + 3] = 255;
    }
  }
  const off = new OffscreenCanvas(ns, nl);
  off.getContext("2d").putImageData(img, 0, 0);
  const mapW = Math.round(W * (1 - BAR_FRAC)) - 6 * dpr;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, mapW, H);

  // latest value per layer as a bar; near-zero layers in red
  const latest = m.rows.map((row) => {
    for (let c = row.length - 1; c >= 0; c -= 1) if (Number.isFinite(row[c])) return row[c];
    return NaN;
  });
  const zero = nearZeroLayers(latest);
  const barX = mapW + 6 * dpr;
  const barW = W - barX;
  const maxV = Math.max(...latest.filter(Number.isFinite), 1e-12);
  const rowH = H / nl;
  for (let r = 0; r < nl; r += 1) {
    const v = latest[r];
    const y = r * rowH;
    const h = Math.max(1, rowH - (rowH > 3 ? 1 : 0));
    if (zero.has(r)) {
      ctx.fillStyle = c.red;
      ctx.fillRect(barX, y, Math.max(2 * dpr, barW * 0.04), h);
    } else if (Number.isFinite(v)) {
      ctx.fillStyle = c.cyan;
      ctx.fillRect(barX, y, Math.max(1, (v / maxV) * barW), h);
    }
  }
  return { dpr, mapW: mapW / dpr, barX: barX / dpr, rowH: rowH / dpr, ns, nl, latest, zero, lo, hi };
}

// Which cell is under the CSS point (px, py): {row, col} or {row, bar: true} or null.
export function hitHeatmap(geo, px, py) {
  if (!geo) return null;
  const row = Math.floor(py / geo.rowH);
  if (row < 0 || row >= geo.nl) return null;
  if (px >= geo.barX) return { row, bar: true };
  if (px < 0 || px >= geo.mapW) return null;
  return { row, col: Math.min(geo.ns - 1, Math.floor((px / geo.mapW) * geo.ns)) };
}
