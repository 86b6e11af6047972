// Number, size, time and duration formatting shared by every panel. Pure functions.

const DASH = "\u2014";

export function isNum(v) {
  return typeof v === "number" && !Number.isNaN(v);
}

// A metric value: 4 significant digits, exponent form for very small/large magnitudes.
export function fmtNum(v, digits = 4) {
  if (v === null || v === undefined) return DASH;
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-3) return v.toExponential(digits - 2).replace("e+", "e");
  const s = v.toPrecision(digits);
  // drop trailing zeros of a decimal fraction ("0.5000" -> "0.5")
  return s.includes(".") && !s.includes("e") ? s.replace(/\.?0+$/, "") : s;
}

// Learning rates read best as mantissa + exponent (2.0e-4).
export function fmtLr(v) {
  if (v === null || v === undefined) return DASH;
  if (!Number.isFinite(v)) return fmtNum(v);
  if (v === 0) return "0";
  return v.toExponential(1).replace("e+", "e");
}

export function fmtInt(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return DASH;
  return Math.round(v).toLocaleString("en-US");
}

// Axis tick for a step count: 12000 -> "12k".
export function fmtStepTick(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}

export function fmtBytes(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let x = Math.abs(v);
  let i = 0;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i += 1;
  }
  const s = x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
  return `${v < 0 ? "-" : ""}${s} ${units[i]}`;
}

export function fmtRate(v, unit) {
  if (v === null || v === undefined) return DASH;
  if (!Number.isFinite(v)) return fmtNum(v);
  const a = Math.abs(v);
  let s;
  if (a >= 1e6) s = `${(v / 1e6).toFixed(2)}M`;
  else if (a >= 1e4) s = `${(v / 1e3).toFixed(1)}k`;
  else if (a >= 100) s = v.toFixed(0);
  else if (a >= 1) s = v.toFixed(2);
  else s = v.toPrecision(2);
  return `${s} ${unit}`;
}

// A duration in seconds: "45s", "3m 12s", "2h 05m", "9d 21h".
export function fmtDuration(sec) {
  if (sec === null || sec === undefined || !Number.isFinite(sec)) return DASH;
  const neg = sec < 0;
  let s = Math.round(Math.abs(sec));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const p2 = (n) => String(n).padStart(2, "0");
  let out;
  if (d > 0) out = `${d}d ${p2(h)}h`;
  else if (h > 0) out = `${h}h ${p2(m)}m`;
  else if (m > 0) out = `${m}m ${p2(s)}s`;
  else out = `${s}s`;
  return neg ? `-${out}` : out;
}

// Axis tick for relative time: short and unit-bearing ("90s" -> "1m30s").
export function fmtRelTick(sec) {
  const a = Math.abs(sec);
  if (a < 60) return `${+sec.toFixed(1)}s`;
  if (a < 3600) {
    const m = Math.floor(a / 60);
    const s = Math.round(a - m * 60);
    return `${sec < 0 ? "-" : ""}${m}m${s ? `${String(s).padStart(2, "0")}s` : ""}`;
  }
  if (a < 86400) {
    const h = Math.floor(a / 3600);
    const m = Math.round((a - h * 3600) / 60);
    return `${sec < 0 ? "-" : ""}${h}h${m ? String(m).padStart(2, "0") : ""}`;
  }
  return `${+(sec / 86400).toFixed(1)}d`;
}

const p2 = (n) => String(n).padStart(2, "0");

// Wall clock in local time; the date is added when the span crosses days.
export function fmtClock(unixSec, withDate = false) {
  if (!Number.isFinite(unixSec)) return DASH;
  const d = new Date(unixSec * 1000);
  const hms = `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
  if (!withDate) return hms;
  return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${hms}`;
}

export function fmtWallTick(unixSec, spanSec) {
  const d = new Date(unixSec * 1000);
  if (spanSec > 2 * 86400) return `${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${p2(d.getHours())}h`;
  if (spanSec > 600) return `${p2(d.getHours())}:${p2(d.getMinutes())}`;
  return `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
}

export function fmtPct(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return DASH;
  return `${Math.round(v)}%`;
}

// "1,234 / 5,000" or "1,234" when the maximum is unknown.
export function fmtStepOf(step, max) {
  if (step === null || step === undefined) return DASH;
  return max ? `${fmtInt(step)} / ${fmtInt(max)}` : fmtInt(step);
}

// Text from the watched root (run names and ids, errors, alerts, layer names, hosts) made
// harmless to show: control characters and the Unicode bidi controls become "?", as in the
// terminal views (mudpuppy_monitor/inert.py). textContent already keeps markup out; this keeps
// a U+202E from making `uni-\u202etxt.exe` read `uni-exe.txt`, and a line break from splitting
// a row.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function inert(text) {
  return text === null || text === undefined ? "" : String(text).replace(UNSAFE, "?");
}
