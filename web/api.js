// HTTP helpers. The wire format writes non-finite numbers as "NaN"/"Infinity"/"-Infinity";
// they are turned back into numbers here, so nothing downstream sees the strings.

// A Map, not an object literal: `"constructor" in {}` is true, and a run named "toString"
// must stay a name.
const NONFINITE = new Map([
  ["NaN", NaN],
  ["Infinity", Infinity],
  ["-Infinity", -Infinity],
]);

// A value from the wire as a number (null stays null, the three strings become numbers).
export function num(v) {
  if (typeof v === "number") return v;
  if (typeof v === "string" && NONFINITE.has(v)) return NONFINITE.get(v);
  return v === null || v === undefined ? null : v;
}

// A column of numbers as a Float64Array. The protocol never sends null in a column; should one
// arrive it is read as NaN, which the chart draws as a break with a marker (visible, not hidden).
export function column(arr) {
  const n = arr ? arr.length : 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 1) {
    const v = arr[i];
    out[i] = typeof v === "number" ? v : (NONFINITE.get(v) ?? NaN);
  }
  return out;
}

// Decode a summary's numeric fields in place (loss may be "NaN").
export function decodeSummary(s) {
  for (const k of Object.keys(s)) {
    const v = s[k];
    if (typeof v === "string" && NONFINITE.has(v)) s[k] = NONFINITE.get(v);
  }
  return s;
}

// Run ids contain "/" and the route accepts them as they are; escape each segment only.
export function runPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

export class HttpError extends Error {
  constructor(status, url) {
    super(`HTTP ${status} for ${url}`);
    this.status = status;
  }
}

export async function getJson(url, signal) {
  const res = await fetch(url, { signal, cache: "no-store", credentials: "same-origin" });
  if (!res.ok) throw new HttpError(res.status, url);
  return res.json();
}

export async function fetchDetail(id) {
  const body = await getJson(`api/runs/${runPath(id)}`);
  if (body.summary) decodeSummary(body.summary);
  return body;
}

// The binary series answer (docs/protocol.md, "Series"): a header, then little-endian columns
// at 8-byte aligned offsets, made typed arrays without parsing a number.
export const COLUMNS_TYPE = "application/x-mudpuppy-columns";
const COLUMNS_MAGIC = "MPCOLS01";
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// A column as a Float64Array: "f8" as it is, "i4" (steps) converted by one typed-array copy,
// "i8" (steps past 2**53, rare) one by one.
function typedColumn(buf, at, n, dtype) {
  if (LITTLE_ENDIAN && dtype === "f8") return new Float64Array(buf, at, n);
  if (LITTLE_ENDIAN && dtype === "i4") return Float64Array.from(new Int32Array(buf, at, n));
  const size = dtype === "i4" ? 4 : 8;
  const view = new DataView(buf, at, n * size);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 1) {
    const o = i * size;
    if (dtype === "f8") out[i] = view.getFloat64(o, true);
    else if (dtype === "i4") out[i] = view.getInt32(o, true);
    else out[i] = Number(view.getBigInt64(o, true));
  }
  return out;
}

export function decodeColumns(buf) {
  const bytes = new Uint8Array(buf);
  const magic = String.fromCharCode(...bytes.subarray(0, 8));
  if (magic !== COLUMNS_MAGIC) throw new Error("not a binary series answer");
  const hlen = new DataView(buf).getUint32(8, true);
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + hlen)));
  const base = 12 + hlen;
  const series = {};
  for (const [name, s] of Object.entries(head.series || {})) {
    series[name] = {
      x: typedColumn(buf, base + s.x.offset, s.n, s.x.dtype),
      y: typedColumn(buf, base + s.y.offset, s.n, s.y.dtype),
      count: s.count,
      decimated: !!s.decimated,
    };
  }
  return { run: head.run, generation: head.generation ?? null, x: head.x, series };
}

// Decimated columns of several series: {x: "step"|"time", series: {name: {x, y, count, decimated}}}
// Asked for as binary columns; a server that answers JSON is read as JSON.
export async function fetchSeries(id, names, { x = "step", from = null, to = null, points = 2000 } = {}) {
  const q = new URLSearchParams({ names: names.join(","), x, points: String(Math.round(points)) });
  if (from !== null && Number.isFinite(from)) q.set("from", String(from));
  if (to !== null && Number.isFinite(to)) q.set("to", String(to));
  const url = `api/runs/${runPath(id)}/series?${q}`;
  const res = await fetch(url, {
    cache: "no-store",
    credentials: "same-origin",
    headers: { Accept: `${COLUMNS_TYPE}, application/json;q=0.9` },
  });
  if (!res.ok) throw new HttpError(res.status, url);
  if ((res.headers.get("content-type") || "").startsWith(COLUMNS_TYPE)) {
    const got = decodeColumns(await res.arrayBuffer());
    return { generation: got.generation, x: got.x || x, series: got.series };
  }
  const body = await res.json();
  return { generation: body.generation ?? null, x: body.x || x, series: decodeSeries(body.series) };
}

function decodeSeries(series) {
  const out = {};
  for (const [name, s] of Object.entries(series || {})) {
    out[name] = {
      x: column(s.x),
      y: column(s.y),
      count: s.count ?? (s.x ? s.x.length : 0),
      decimated: !!s.decimated,
    };
  }
  return out;
}

// The series of many runs in one request (POST api/series): {runs: Map(id -> {generation,
// series, markers, lora_snapshots}), missing: [ids]}.
export async function fetchBatch(ids, { names, x = "step", from = null, to = null, points = 2000 }) {
  const req = { runs: ids, names, x, points: Math.round(points) };
  if (from !== null && Number.isFinite(from)) req.from = from;
  if (to !== null && Number.isFinite(to)) req.to = to;
  const res = await fetch("api/series", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(req),
    cache: "no-store",
    credentials: "same-origin",
  });
  if (!res.ok) throw new HttpError(res.status, "api/series");
  const body = await res.json();
  const runs = new Map();
  for (const r of body.runs || []) {
    runs.set(r.id, {
      generation: r.generation ?? null,
      series: decodeSeries(r.series),
      markers: r.markers || [],
      lora_snapshots: r.lora_snapshots || 0,
    });
  }
  return { runs, missing: body.missing || [] };
}

export async function fetchLora(id, points = 200) {
  const body = await getJson(`api/runs/${runPath(id)}/lora?points=${points}`);
  const rows = (m) => (m || []).map((r) => column(r));
  return {
    layers: body.layers || [],
    steps: column(body.steps || []),
    A: rows(body.A),
    B: rows(body.B),
    update: rows(body.update),
  };
}

export async function fetchGpus() {
  return getJson("api/gpus");
}
