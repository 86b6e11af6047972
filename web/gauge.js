// Arc gauges for the GPU panel: a 270-degree track, a value arc coloured by threshold, the value
// in the middle and the label under it.

import { fitCanvas } from "./sparkline.js";
import { colors } from "./theme.js";

// Colour for a fraction of full scale: green below warn, amber below crit, red above.
export function thresholdColor(frac, warn = 0.7, crit = 0.9) {
  const c = colors();
  if (frac === null || !Number.isFinite(frac)) return c.dim;
  if (frac >= crit) return c.red;
  if (frac >= warn) return c.amber;
  return c.green;
}

// g: {frac (0..1 or null), text, label, warn, crit}
export function drawGauge(canvas, g, size = 78) {
  const dpr = fitCanvas(canvas, size, size);
  const ctx = canvas.getContext("2d");
  const W = canvas.width;
  ctx.clearRect(0, 0, W, W);
  const cx = W / 2;
  const cy = W / 2 + 2 * dpr;
  const r = W / 2 - 7 * dpr;
  const a0 = Math.PI * 0.75;
  const a1 = Math.PI * 2.25;
  ctx.lineCap = "round";
  ctx.lineWidth = 5 * dpr;
  const c = colors();
  ctx.strokeStyle = c.grid;
  ctx.beginPath();
  ctx.arc(cx, cy, r, a0, a1);
  ctx.stroke();
  const frac = g.frac === null || !Number.isFinite(g.frac) ? null : Math.max(0, Math.min(1, g.frac));
  const color = thresholdColor(frac, g.warn, g.crit);
  if (frac !== null && frac > 0) {
    ctx.strokeStyle = color;
    ctx.shadowBlur = 8 * dpr;
    ctx.shadowColor = color;
    ctx.beginPath();
    ctx.arc(cx, cy, r, a0, a0 + (a1 - a0) * frac);
    ctx.stroke();
    ctx.shadowBlur = 0;
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillStyle = frac === null ? c.dim : c.text;
  ctx.font = `bold ${Math.round(13 * dpr)}px ui-monospace, "DejaVu Sans Mono", monospace`;
  ctx.fillText(g.text, cx, cy - 2 * dpr);
  ctx.fillStyle = c.dim;
  ctx.font = `${Math.round(9 * dpr)}px ui-monospace, "DejaVu Sans Mono", monospace`;
  ctx.fillText(g.label, cx, cy + r * 0.62);
  return color;
}
