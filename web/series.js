// Columnar series buffers and the pure numeric helpers the charts use: debiased EMA smoothing,
// binary search, and per-pixel min/max decimation. No DOM here.

// Memory bound per series: past this many points the oldest part is compacted (min/max pairs).
export const MAX_POINTS = 250000;

// A growable pair of Float64Array columns. `next` is the server-side index the next streamed
// point will carry (the protocol's `count`); it can exceed `n` when what we hold is decimated.
export class SeriesBuf {
  constructor(cap = 256) {
    this.x = new Float64Array(cap);
    this.y = new Float64Array(cap);
    this.n = 0;
    this.next = 0;
    this.sorted = true;
    this.version = 0; // bumps on replace/compact: caches keyed on it start over
  }

  // The block index of y, brought up to date (rebuilt after a compaction).
  blocks() {
    if (!this.bi || this.biVersion !== this.version) {
      this.bi = new BlockIndex();
      this.biVersion = this.version;
    }
    return this.bi.update(this.y, this.n);
  }

  static from(x, y, count) {
    // headroom so a live run does not copy its columns again a few points after a fetch
    const b = new SeriesBuf(Math.max(256, Math.ceil(x.length * 1.25)));
    b.x.set(x);
    b.y.set(y);
    b.n = x.length;
    b.next = count ?? x.length;
    b.sorted = isSorted(x, x.length);
    return b;
  }

  push(x, y) {
    if (this.n === this.x.length) this.grow();
    if (this.n > 0 && x < this.x[this.n - 1]) this.sorted = false;
    this.x[this.n] = x;
    this.y[this.n] = y;
    this.n += 1;
    if (this.n > MAX_POINTS) this.compact();
  }

  grow() {
    const cap = Math.min(this.x.length * 2, MAX_POINTS + 2);
    const nx = new Float64Array(Math.max(cap, this.n + 1));
    const ny = new Float64Array(nx.length);
    nx.set(this.x.subarray(0, this.n));
    ny.set(this.y.subarray(0, this.n));
    this.x = nx;
    this.y = ny;
  }

  // Shrink the older half: of each group of 4 points keep the finite min and max (spikes
  // survive) and the first non-finite value (its marker and the break in the line survive),
  // then any further non-finite ones while fewer than 3 are kept, so every compaction frees
  // at least a quarter of the older half even when it is all NaN.
  compact() {
    const half = this.n >> 1;
    const { x, y } = this;
    let w = 0;
    for (let i = 0; i + 3 < half; i += 4) {
      let lo = -1;
      let hi = -1;
      let bad = -1;
      for (let k = i; k < i + 4; k += 1) {
        const v = y[k];
        if (v - v !== 0) {
          if (bad < 0) bad = k;
        } else {
          if (lo < 0 || v < y[lo]) lo = k;
          if (hi < 0 || v > y[hi]) hi = k;
        }
      }
      const pick = [false, false, false, false];
      let m = 0;
      for (let k = i; k < i + 4; k += 1) {
        if (k === lo || k === hi || k === bad) {
          pick[k - i] = true;
          m += 1;
        }
      }
      for (let k = i; k < i + 4 && m < 3; k += 1) {
        if (!pick[k - i] && y[k] - y[k] !== 0) {
          pick[k - i] = true;
          m += 1;
        }
      }
      // in index order: w <= i, so a kept point is read before anything is written over it
      for (let k = i; k < i + 4; k += 1) {
        if (!pick[k - i]) continue;
        x[w] = x[k];
        y[w] = y[k];
        w += 1;
      }
    }
    const start = half - (half % 4);
    this.x.copyWithin(w, start, this.n);
    this.y.copyWithin(w, start, this.n);
    this.n = w + (this.n - start);
    this.version += 1;
  }
}

export function isSorted(x, n) {
  for (let i = 1; i < n; i += 1) if (x[i] < x[i - 1]) return false;
  return true;
}

// First index i in [0, n) with x[i] >= v (n when none). x must be sorted.
export function lowerBound(x, n, v) {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Index of the point nearest to v (by x), or -1 when empty.
export function nearest(x, n, v, sorted = true) {
  if (n === 0) return -1;
  if (!sorted) {
    let best = 0;
    for (let i = 1; i < n; i += 1) if (Math.abs(x[i] - v) < Math.abs(x[best] - v)) best = i;
    return best;
  }
  const i = lowerBound(x, n, v);
  if (i === 0) return 0;
  if (i === n) return n - 1;
  return v - x[i - 1] <= x[i] - v ? i - 1 : i;
}

// TensorBoard's smoothing: an EMA debiased like Adam, so the first points are not pulled to 0.
//   last = last * w + (1 - w) * y;  count += 1;  smoothed = last / (1 - w^count)
// Non-finite values pass through unsmoothed and leave the state untouched (a NaN stays visible).
// `state` lets a caller continue over appended points: {last, count, i}.
export function emaInto(y, n, w, out, state) {
  let { last, count } = state;
  for (let i = state.i; i < n; i += 1) {
    const v = y[i];
    if (!Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    last = last * w + (1 - w) * v;
    count += 1;
    out[i] = w === 0 ? v : last / (1 - w ** count);
  }
  state.last = last;
  state.count = count;
  state.i = n;
  return out;
}

export function ema(y, w) {
  const out = new Float64Array(y.length);
  return emaInto(y, y.length, w, out, { last: 0, count: 0, i: 0 });
}

// Min/max of fixed blocks of a y column (append-only), so a draw with many points per pixel
// steps over blocks instead of points. A block with a non-finite value is flagged and read point
// by point (its NaN must stay visible). Updating after an append redoes only the last block.
export const BLOCK_SIZES = [4, 16, 64, 256];

export class BlockIndex {
  constructor() {
    this.levels = BLOCK_SIZES.map((size) => ({
      size, min: new Float64Array(64), max: new Float64Array(64), bad: new Uint8Array(64), nb: 0,
    }));
    this.upTo = 0;
  }

  update(y, n) {
    if (n < this.upTo) this.upTo = 0;
    for (const L of this.levels) {
      const B = L.size;
      const nb = Math.ceil(n / B);
      if (nb > L.min.length) {
        const cap = Math.max(nb, L.min.length * 2);
        const grow = (a, T) => {
          const b = new T(cap);
          b.set(a);
          return b;
        };
        L.min = grow(L.min, Float64Array);
        L.max = grow(L.max, Float64Array);
        L.bad = grow(L.bad, Uint8Array);
      }
      for (let j = Math.floor(this.upTo / B); j < nb; j += 1) {
        let lo = Infinity;
        let hi = -Infinity;
        let bad = 0;
        const end = Math.min(n, (j + 1) * B);
        for (let i = j * B; i < end; i += 1) {
          const v = y[i];
          if (v - v === 0) {
            if (v < lo) lo = v;
            if (v > hi) hi = v;
          } else bad = 1;
        }
        L.min[j] = lo;
        L.max[j] = hi;
        L.bad[j] = bad;
      }
      L.nb = nb;
    }
    this.upTo = n;
    return this;
  }
}

// Per-pixel-column decimation of the points of (x, y) inside [x0, x1].
// Emits up to 2 points per column (min and max, in the order the line runs), in device pixels
// for x and in data units for y, into `out.cols` (a Float64Array of stride 2 reused between draws, grown on
// demand), and collects the x of non-finite values (drawn as markers). Breaks in the line are
// emitted as (px, NaN). On a log axis y is returned as log10(y), and values <= 0 break the line.
// With a BlockIndex `bi` and sorted x, whole blocks no wider than a pixel are merged by their
// min/max (a block is placed at the column of its first point: at most 1 px of x error).
export function decimate(x, y, n, sorted, x0, x1, pxPerX, xOffset, out, logY, nonfinite, bi) {
  let i0 = 0;
  let i1 = n;
  if (sorted) {
    // one point either side so the line runs to the edges
    i0 = Math.max(0, lowerBound(x, n, x0 + xOffset) - 1);
    i1 = Math.min(n, lowerBound(x, n, x1 + xOffset) + 1);
  }
  let L = null;
  if (sorted && bi && i1 - i0 > 2) {
    const ptsPerPx = (i1 - i0) / Math.max(1, (x[i1 - 1] - x[i0]) * pxPerX);
    for (const lv of bi.levels) if (lv.size <= ptsPerPx) L = lv;
  }
  const B = L ? L.size : 0;
  let w = 0;
  let col = NaN;
  let first = 0;
  let last = 0;
  let lo = 0;
  let hi = 0;
  let inCol = false;
  let cols = out.cols;
  const grow = () => {
    const bigger = new Float64Array(cols.length * 2);
    bigger.set(cols);
    cols = bigger;
    out.cols = bigger;
  };
  const flush = () => {
    if (!inCol) return;
    if (w + 4 > cols.length) grow();
    // min and max, in the column's direction (rising: min first), which joins neighbouring
    // columns like first/last would while drawing half the points
    const a = first <= last ? lo : hi;
    const b = first <= last ? hi : lo;
    cols[w++] = col;
    cols[w++] = a;
    if (b !== a) {
      cols[w++] = col;
      cols[w++] = b;
    }
    inCol = false;
  };
  const gap = (px) => {
    flush();
    if (w + 2 > cols.length) grow();
    cols[w++] = px;
    cols[w++] = NaN;
    col = NaN;
  };
  let i = i0;
  while (i < i1) {
    const xv = x[i] - xOffset;
    const px = Math.round((xv - x0) * pxPerX);
    if (B && i % B === 0 && i + B <= i1) {
      const j = i / B;
      if (!L.bad[j] && !(logY && L.min[j] <= 0)) {
        let bf = y[i];
        let bl = y[i + B - 1];
        let bmin = L.min[j];
        let bmax = L.max[j];
        if (logY) {
          bf = Math.log10(bf);
          bl = Math.log10(bl);
          bmin = Math.log10(bmin);
          bmax = Math.log10(bmax);
        }
        if (px !== col) {
          flush();
          col = px;
          first = bf;
          lo = bmin;
          hi = bmax;
          inCol = true;
        } else {
          if (bmin < lo) lo = bmin;
          if (bmax > hi) hi = bmax;
        }
        last = bl;
        i += B;
        continue;
      }
    }
    i += 1;
    if (!sorted && (xv < x0 || xv > x1)) continue;
    let v = y[i - 1];
    if (v - v !== 0) {
      gap(px);
      if (nonfinite && xv >= x0 && xv <= x1) nonfinite.push(xv);
      continue;
    }
    if (logY) {
      if (v <= 0) {
        gap(px);
        continue;
      }
      v = Math.log10(v);
    }
    if (px !== col) {
      flush();
      col = px;
      first = last = lo = hi = v;
      inCol = true;
    } else {
      last = v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  flush();
  return w >> 1;
}
