// Tiny line drawings (sidebar loss, GPU history). Callers batch these into the frame loop.

import { colors } from "./theme.js";

// Size the canvas backing store to its CSS box x devicePixelRatio; returns the ratio.
export function fitCanvas(canvas, cssW, cssH) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.round(cssW * dpr);
  const h = Math.round(cssH * dpr);
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
    canvas.style.width = `${cssW}px`;
    canvas.style.height = `${cssH}px`;
  }
  return dpr;
}

// values: array-like of numbers (non-finite ones are skipped and flagged with a red dot).
// opts.min/opts.max pin the range (GPU percentages), else it fits the data.
export function drawSparkline(canvas, values, color, opts = {}) {
  const cssW = opts.width || 90;
  const cssH = opts.height || 20;
  const dpr = fitCanvas(canvas, cssW, cssH);
  const ctx = canvas.getContext("2d");
  const W = canvas.width;
  const H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  const n = values.length;
  if (n === 0) return;
  let lo = opts.min ?? Infinity;
  let hi = opts.max ?? -Infinity;
  if (opts.min === undefined || opts.max === undefined) {
    for (let i = 0; i < n; i += 1) {
      const v = values[i];
      if (!Number.isFinite(v)) continue;
      if (opts.min === undefined && v < lo) lo = v;
      if (opts.max === undefined && v > hi) hi = v;
    }
  }
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    lo = 0;
    hi = 1;
  }
  if (hi - lo < 1e-12) {
    lo -= 1;
    hi += 1;
  }
  const pad = 2 * dpr;
  const xAt = (i) => (n === 1 ? W / 2 : pad + (i / (n - 1)) * (W - 2 * pad));
  const yAt = (v) => H - pad - ((v - lo) / (hi - lo)) * (H - 2 * pad);
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.2 * dpr;
  ctx.lineJoin = "round";
  ctx.beginPath();
  let pen = false;
  const bad = [];
  for (let i = 0; i < n; i += 1) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      bad.push(i);
      pen = false;
      continue;
    }
    if (pen) ctx.lineTo(xAt(i), yAt(v));
    else ctx.moveTo(xAt(i), yAt(v));
    pen = true;
  }
  ctx.stroke();
  ctx.fillStyle = colors().red;
  for (const i of bad) ctx.fillRect(xAt(i) - dpr, 0, 2 * dpr, 3 * dpr);
}
