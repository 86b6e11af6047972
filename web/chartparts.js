// Pieces of the chart that need no chart state of their own: axes and markers. Split from
// chart.js to keep each file small.

import { logTicks, niceTicks, timeTicks } from "./axis.js";
import { fmtRelTick, fmtStepTick, fmtWallTick } from "./format.js";
import { colors } from "./theme.js";

export function drawAxes(chart, { left, right, top, bottom, x0, x1, ymin, ymax, pxPerX, py, dpr }) {
  const { ctx } = chart;
  const c = colors();
  ctx.strokeStyle = c.grid;
  ctx.lineWidth = 1;
  ctx.setLineDash([]);
  ctx.fillStyle = c.text;
  const yt = chart.logY ? logTicks(ymin, ymax, 4) : niceTicks(ymin, ymax, 4);
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  ctx.beginPath();
  for (const v of yt) {
    const Y = Math.round(py(v)) + 0.5;
    if (Y < top - 1 || Y > bottom + 1) continue;
    ctx.moveTo(left, Y);
    ctx.lineTo(right, Y);
    ctx.fillText(chart.yFormat(chart.logY ? 10 ** v : v), left - 6 * dpr, Y);
  }
  const span = x1 - x0;
  const xt = chart.xMode === "step" ? niceTicks(x0, x1, 6) : timeTicks(x0, x1, 6);
  const fmt =
    chart.xMode === "step"
      ? fmtStepTick
      : chart.xMode === "rel"
        ? fmtRelTick
        : (v) => fmtWallTick(v, span);
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const v of xt) {
    const X = Math.round(left + (v - x0) * pxPerX) + 0.5;
    if (X < left - 1 || X > right + 1) continue;
    ctx.moveTo(X, top);
    ctx.lineTo(X, bottom);
    ctx.fillText(fmt(v), X, bottom + 5 * dpr);
  }
  ctx.stroke();
  ctx.strokeStyle = c.dim;
  ctx.strokeRect(left + 0.5, top + 0.5, right - left, bottom - top);
}

// Returns {kind: count} of what was drawn (read by tests through state()).
export function drawMarkers(chart, { left, right, top, bottom, x0, pxPerX, nonfinite, dpr }) {
  const { ctx } = chart;
  const c = colors();
  const counts = { nonfinite: 0, spike: 0, checkpoint: 0, restart: 0 };
  const seenNf = new Set();
  const inView = (X) => X >= left - 1 && X <= right + 1;
  // vertical lines first (checkpoints dim cyan dashed, restarts magenta)
  for (const mk of chart.markers) {
    if (mk.kind !== "checkpoint" && mk.kind !== "restart") continue;
    const X = Math.round(left + (mk.x - x0) * pxPerX) + 0.5;
    if (!inView(X)) continue;
    ctx.strokeStyle = mk.kind === "restart" ? c.magenta : c.cyan;
    ctx.globalAlpha = mk.kind === "restart" ? 0.8 : 0.35;
    ctx.setLineDash(mk.kind === "restart" ? [] : [3 * dpr, 3 * dpr]);
    ctx.lineWidth = dpr;
    ctx.beginPath();
    ctx.moveTo(X, top);
    ctx.lineTo(X, bottom);
    ctx.stroke();
    counts[mk.kind] += 1;
  }
  ctx.globalAlpha = 1;
  ctx.setLineDash([]);
  const tri = (X, Y, down, color) => {
    const s = 5 * dpr;
    ctx.fillStyle = color;
    ctx.beginPath();
    if (down) {
      ctx.moveTo(X - s, Y);
      ctx.lineTo(X + s, Y);
      ctx.lineTo(X, Y + 1.6 * s);
    } else {
      ctx.moveTo(X - s, Y + 1.6 * s);
      ctx.lineTo(X + s, Y + 1.6 * s);
      ctx.lineTo(X, Y);
    }
    ctx.closePath();
    ctx.fill();
  };
  // non-finite values: a red triangle at the top edge (from the data and from the server)
  const nfs = nonfinite.concat(chart.markers.filter((mk) => mk.kind === "nonfinite"));
  for (const mk of nfs) {
    const X = Math.round(left + (mk.x - x0) * pxPerX);
    if (!inView(X) || seenNf.has(X)) continue;
    seenNf.add(X);
    tri(X, top, true, c.red);
    counts.nonfinite += 1;
  }
  for (const mk of chart.markers) {
    if (mk.kind !== "spike") continue;
    const X = Math.round(left + (mk.x - x0) * pxPerX);
    if (!inView(X)) continue;
    tri(X, top + 10 * dpr, true, c.amber);
    counts.spike += 1;
  }
  return counts;
}
