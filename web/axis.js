// Tick generation for linear, log and time axes. Pure functions.

// Never more ticks than this, whatever the range (a bound for every loop below).
const MAX_TICKS = 1000;

// "Nice" ticks (1, 2, 5 x 10^k) covering [lo, hi] with about `count` ticks.
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const r = raw / mag;
  const step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
  const start = Math.ceil(lo / step) * step;
  // A step below the float spacing at `start` cannot move a value (a flat line with float
  // noise, a zoom into nanoseconds of a unix time): `v += step` would never end.
  if (!Number.isFinite(step) || !(step > 0) || start + step === start) return [lo];
  // by index, with a cap, so rounding can neither stall nor run away
  const n = Math.min(MAX_TICKS, Math.floor((hi - start) / step + 1e-9) + 1);
  const out = [];
  for (let i = 0; i < n; i += 1) {
    const v = start + i * step;
    if (out.length && v === out[out.length - 1]) continue;
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

// Ticks on a log10 axis, given in log10 units; returned as log10 values.
export function logTicks(lo, hi, count = 5) {
  const decades = hi - lo;
  if (decades < 1) {
    // less than one decade: linear nice ticks in value space, mapped back to log space
    const vals = niceTicks(10 ** lo, 10 ** hi, count).filter((v) => v > 0);
    // neighbouring values a few ulps apart map to the same log10: one tick each
    return vals.map((v) => Math.log10(v)).filter((v, i, a) => i === 0 || v !== a[i - 1]);
  }
  if (!Number.isFinite(decades)) return [lo];
  const every = Math.max(1, Math.ceil(decades / count));
  const out = [];
  for (let e = Math.ceil(lo); e <= Math.floor(hi) && out.length < MAX_TICKS; e += every) out.push(e);
  return out;
}

const TIME_STEPS = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
  172800, 604800,
];

// Ticks for seconds (relative or unix), at human steps (1 s ... 1 week).
export function timeTicks(lo, hi, count = 5) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  if (span < count) return niceTicks(lo, hi, count);
  const want = span / count;
  const step = TIME_STEPS.find((s) => s >= want) || Math.ceil(want / 604800) * 604800;
  // align wall-clock ticks to local minutes/hours
  const tz = step >= 3600 ? new Date(lo * 1000).getTimezoneOffset() * 60 : 0;
  const out = [];
  const start = Math.ceil((lo - tz) / step) * step + tz;
  for (let i = 0; i < MAX_TICKS; i += 1) {
    const v = start + i * step;
    if (v > hi) break;
    out.push(v);
  }
  return out;
}
