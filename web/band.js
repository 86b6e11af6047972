// A shaded band behind a line (a group's min-max or +-std around its mean). A band is
// {lo: SeriesBuf, hi: SeriesBuf} on the same x as its line, a few hundred points at most (the
// grouping's grid), so it is drawn point by point without decimation.

// The [min, max] of the band's values inside [x0, x1] (log10 on a log axis, values <= 0 left
// out): the chart's y range must hold the band, not only its mean line.
export function bandRange({ lo, hi }, x0, x1, logY) {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < lo.n; i += 1) {
    const x = lo.x[i];
    if (x < x0 || x > x1) continue;
    let a = lo.y[i];
    let b = hi.y[i];
    if (logY) {
      a = a > 0 ? Math.log10(a) : NaN;
      b = b > 0 ? Math.log10(b) : NaN;
    }
    if (a < min) min = a;
    if (b > max) max = b;
  }
  return [min, max];
}

// Fill between lo and hi in the series' colour; a point with a non-finite bound (or <= 0 on a
// log axis) splits the band. Returns 1 when something was drawn, else 0.
export function drawBand(ctx, s, { x0, x1, left, pxPerX, py, logY, alpha }) {
  const { lo, hi } = s.band;
  const val = (v) => (logY ? (v > 0 ? Math.log10(v) : NaN) : v);
  const pieces = [];
  let cur = [];
  for (let i = 0; i < lo.n; i += 1) {
    const x = lo.x[i] - (s.xOffset || 0);
    const a = val(lo.y[i]);
    const b = val(hi.y[i]);
    const ok = Number.isFinite(a) && Number.isFinite(b) && x >= x0 - (x1 - x0) && x <= x1 + (x1 - x0);
    if (!ok) {
      if (cur.length) pieces.push(cur);
      cur = [];
      continue;
    }
    cur.push([left + (x - x0) * pxPerX, py(a), py(b)]);
  }
  if (cur.length) pieces.push(cur);
  if (!pieces.length) return 0;
  ctx.save();
  ctx.globalAlpha = alpha;
  ctx.fillStyle = s.color;
  ctx.beginPath();
  for (const p of pieces) {
    ctx.moveTo(p[0][0], p[0][2]);
    for (const [X, , Yhi] of p) ctx.lineTo(X, Yhi);
    for (let k = p.length - 1; k >= 0; k -= 1) ctx.lineTo(p[k][0], p[k][1]);
    ctx.closePath();
  }
  ctx.fill();
  ctx.restore();
  return 1;
}
