// The snapshot page's transport: the daemon's HTTP API and WebSocket answered from the data the
// page carries (a <script type="application/json" id="mudpuppy-snapshot">), so the dashboard's
// own code draws a snapshot opened from disk, with no server and no network. Loaded before
// app.js in a snapshot only; on a served page (no data element) it does nothing.
//
// Data shapes: docs/dashboard.md ("Snapshots"). Columns are base64 little-endian typed arrays.

const DATA_ID = "mudpuppy-snapshot";
const NO_GPUS = { backend: "none", name: "none", simulated: false, reason: "a snapshot holds no GPU data", t: null, devices: [], history: {}, attribution: {} };

function bytes(b64) {
  const bin = atob(b64 || "");
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

const TYPED = { i4: Int32Array, f4: Float32Array, f8: Float64Array };

export function decodeColumn(b64, dtype) {
  return new TYPED[dtype](bytes(b64));
}

// A number as the wire writes it: non-finite values as the run format's strings.
function wire(v) {
  if (Number.isFinite(v)) return v;
  return Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
}

export class OfflineApi {
  constructor(doc) {
    this.doc = doc;
    this.cols = new Map(); // "run\0name" -> {step, t, y, count, decimated}
  }

  column(run, name) {
    const key = `${run}\u0000${name}`;
    let c = this.cols.get(key);
    if (c) return c;
    const raw = this.doc.series?.[run]?.[name];
    if (!raw) return null;
    const step = decodeColumn(raw.s, raw.sd);
    const off = decodeColumn(raw.t, "f4");
    const t = new Float64Array(off.length);
    for (let i = 0; i < off.length; i += 1) t[i] = raw.t0 === null ? NaN : raw.t0 + off[i];
    c = { step, t, y: decodeColumn(raw.y, "f4"), count: raw.count, decimated: raw.decimated };
    this.cols.set(key, c);
    return c;
  }

  // One run's columns for {names, x, from, to} (names null: every series of the run).
  series(run, { names = null, x = "step", from = null, to = null }) {
    names = names || Object.keys(this.doc.series?.[run] || {});
    x = x === "time" ? "time" : "step";
    from = from === null || from === "" || !Number.isFinite(Number(from)) ? -Infinity : Number(from);
    to = to === null || to === "" || !Number.isFinite(Number(to)) ? Infinity : Number(to);
    const out = {};
    for (const name of names) {
      const c = this.column(run, name);
      if (!c) continue;
      const xs = [];
      const ys = [];
      const src = x === "time" ? c.t : c.step;
      for (let i = 0; i < src.length; i += 1) {
        const v = src[i];
        if (!Number.isFinite(v) || v < from || v > to) continue;
        xs.push(v);
        ys.push(wire(c.y[i]));
      }
      out[name] = { x: xs, y: ys, count: c.count, decimated: c.decimated };
    }
    return { run, generation: this.doc.details[run]?.generation ?? null, x, series: out };
  }

  // POST api/series: the series of many runs at once, in the daemon's shape.
  batch(req) {
    const ids = Array.isArray(req?.runs) ? [...new Set(req.runs)] : [];
    const names = Array.isArray(req?.names) ? req.names : null;
    const runs = [];
    const missing = [];
    for (const id of ids) {
      const detail = this.doc.details[id];
      if (!detail) {
        missing.push(id);
        continue;
      }
      const got = this.series(id, { names, x: req.x, from: req.from ?? null, to: req.to ?? null });
      runs.push({
        id, generation: got.generation, series: got.series,
        markers: detail.markers || [], lora_snapshots: detail.lora_snapshots || 0,
      });
    }
    return { x: req?.x === "time" ? "time" : "step", points: req?.points ?? 2000, runs, missing };
  }

  lora(run) {
    const raw = this.doc.lora?.[run];
    if (!raw) return { layers: [], steps: [], t: [], A: [], B: [], update: [] };
    const rows = (list) => (list || []).map((r) => Array.from(decodeColumn(r, "f4"), wire));
    const t = Array.from(decodeColumn(raw.t, "f8"), (v) => (Number.isFinite(v) ? v : null));
    return {
      layers: raw.layers, steps: Array.from(decodeColumn(raw.steps, "f8")), t,
      A: rows(raw.A), B: rows(raw.B), update: rows(raw.update),
    };
  }

  // [status, body] for a request path relative to the page ("api/runs/a%2Fb/series?...").
  answer(url, init = {}) {
    const [path, query = ""] = url.replace(/^\.\//, "").split("?");
    const q = new URLSearchParams(query);
    const doc = this.doc;
    if (path === "api/series" && (init.method || "GET").toUpperCase() === "POST") {
      try {
        return [200, this.batch(JSON.parse(init.body))];
      } catch (err) {
        return [400, { error: "body: not JSON" }];
      }
    }
    if (path === "api/runs") return [200, { runs: doc.runs }];
    if (path === "api/gpus") return [200, NO_GPUS];
    if (path === "api/config-diff") return [200, doc.config];
    if (path === "healthz") return [200, { ok: true, runs: doc.runs.length }];
    const m = path.match(/^api\/runs\/(.+?)(?:\/(series|lora|export))?$/);
    if (m) {
      let run;
      try {
        run = m[1].split("/").map(decodeURIComponent).join("/");
      } catch (err) {
        return [404, { error: "no such run" }];
      }
      if (!doc.details[run]) return [404, { error: "no such run" }];
      if (m[2] === "series") {
        const names = q.has("names") ? q.get("names").split(",").filter(Boolean) : null;
        return [200, this.series(run, { names, x: q.get("x"), from: q.get("from"), to: q.get("to") })];
      }
      if (m[2] === "lora") return [200, this.lora(run)];
      if (m[2] === "export") return [404, { error: "a snapshot holds decimated data only: export from the daemon" }];
      return [200, doc.details[run]];
    }
    return [404, { error: "not in this snapshot" }];
  }

  // The first message of the stream: the runs as they were.
  snapshotMessage() {
    return { type: "snapshot", protocol: 1, runs: this.doc.runs, gpus: NO_GPUS };
  }
}

// A WebSocket that opens, delivers the snapshot message and then stays quiet.
function offlineSocket(api) {
  return class OfflineSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      setTimeout(() => {
        if (this.readyState !== 0) return;
        this.readyState = 1;
        if (this.onopen) this.onopen({});
        if (this.onmessage) this.onmessage({ data: JSON.stringify(api.snapshotMessage()) });
      }, 0);
    }

    send() {}

    close() {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose && this.onclose({ code: 1000 }), 0);
    }
  };
}

export function installOffline(doc) {
  const api = new OfflineApi(doc);
  window.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input.url;
    const [status, body] = api.answer(url, init || {});
    return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  };
  window.WebSocket = offlineSocket(api);
  return api;
}

function main() {
  const node = document.getElementById(DATA_ID);
  if (!node) return;
  const doc = JSON.parse(node.textContent);
  const api = installOffline(doc);
  document.body.classList.add("snapshot");
  // the view the snapshot was taken with, unless the file was opened with a view of its own
  if (!window.location.hash && doc.view) window.history.replaceState(null, "", `#${doc.view}`);
  const badge = document.createElement("span");
  badge.className = "snapshot-badge";
  const when = new Date(doc.created * 1000);
  badge.textContent = `SNAPSHOT \u00b7 ${when.toLocaleString()} \u00b7 ${doc.runs.length} run(s) \u00b7 read-only`;
  badge.title = `${doc.points_per_series} points per series at most (min/max per bucket)`;
  document.getElementById("top")?.append(badge);
  window.__mudpuppySnapshot = { doc, api };
}

main();
