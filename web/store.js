// Client-side state of the runs: summaries, and for the runs on screen their series buffers,
// zoomed detail and markers. It fetches over HTTP and applies streamed points by index, so a
// point is never appended twice and a gap triggers a refetch (protocol: `i0`, `count`).

import { fetchDetail, fetchSeries, num } from "./api.js";
import { SeriesBuf } from "./series.js";
import { backoffDelay } from "./socket.js";

export class RunData {
  constructor(id) {
    this.id = id;
    this.detail = null;
    this.generation = null;
    this.xKind = null; // "step" | "time": what x the buffers hold
    this.base = new Map(); // series name -> SeriesBuf
    this.zoom = null; // {key, bufs: Map} finer data for the zoomed range
    this.markers = []; // {kind, step, t, series}
    this.loading = null; // a Promise while a fetch is in flight
    this.queued = []; // points messages that arrived during the fetch
    this.fetches = 0;
    this.failures = 0; // failed loads in a row (the retry backoff)
  }

  // Forget what was loaded: after a failed load it cannot be trusted to be complete.
  clear() {
    this.detail = null;
    this.generation = null;
    this.xKind = null;
    this.base = new Map();
    this.zoom = null;
    this.markers = [];
    this.queued = [];
  }
}

export class Store {
  constructor({ wanted, onData }) {
    this.wanted = wanted; // series names the charts show
    this.onData = onData; // called with a run id after its data changed
    this.summaries = new Map();
    this.data = new Map();
    this.points = 2000;
    this.zoomFetches = 0;
    this.dropped = 0; // streamed points skipped because we already had them
    this.loads = 0; // loads completed, over the page's life
  }

  setSummaries(list, replace = false) {
    if (replace) {
      const ids = new Set(list.map((s) => s.id));
      for (const id of [...this.summaries.keys()]) if (!ids.has(id)) this.remove(id);
    }
    for (const s of list) this.summaries.set(s.id, s);
  }

  // A summary from the stream. A run held at another generation is reset upstream: its data is
  // refetched. Returns true for a run not known before.
  updateSummary(s) {
    const old = this.summaries.get(s.id);
    const d = this.data.get(s.id);
    if (old && d && old.generation !== s.generation && d.xKind) this.load(s.id, d.xKind, { force: true });
    this.summaries.set(s.id, s);
    return !old;
  }

  remove(id) {
    this.summaries.delete(id);
    this.data.delete(id);
  }

  summary(id) {
    return this.summaries.get(id) || null;
  }

  allSummaries() {
    return [...this.summaries.values()];
  }

  // Ids of the runs whose data is held (loaded or loading).
  heldIds() {
    return [...this.data.keys()];
  }

  // Drop the data of every run not in `ids` (a Set): what is no longer streamed goes stale.
  keepOnly(ids) {
    for (const id of [...this.data.keys()]) if (!ids.has(id)) this.data.delete(id);
  }

  // Load a run unless its buffers hold (or are being loaded with) the x kind asked for.
  ensure(id, xKind) {
    const d = this.data.get(id);
    if (!d || (d.xKind !== xKind && !(d.loading && d.loadingKind === xKind))) this.load(id, xKind);
  }

  // Refetch every run held (after a reconnect or a resync), even those with a load in flight.
  reloadAll(xKind) {
    for (const id of this.heldIds()) this.load(id, xKind, { force: true });
  }

  xKindOf(id) {
    return this.data.get(id)?.xKind ?? null;
  }

  // The LoRA layer names of a loaded run, or null while its detail is not known.
  loraLayers(id) {
    const d = this.data.get(id);
    return d && d.detail ? d.detail.lora_layers || [] : null;
  }

  markers(id) {
    return this.data.get(id)?.markers || [];
  }

  // The loaded (not zoomed) buffer of a series.
  baseBuf(id, name) {
    return this.data.get(id)?.base.get(name) || null;
  }

  stats() {
    return {
      runs: [...this.summaries.keys()].sort(),
      zoomFetches: this.zoomFetches,
      droppedPoints: this.dropped,
      loads: this.loads,
      held: this.heldIds().sort(),
      pending: [...this.data.values()].filter((d) => d.loading).length,
    };
  }

  runData(id) {
    let d = this.data.get(id);
    if (!d) {
      d = new RunData(id);
      this.data.set(id, d);
    }
    return d;
  }

  // Load (or reload) the series of a run at the requested x kind. Points arriving meanwhile are
  // queued and replayed after, so nothing is lost between the HTTP answer and the stream.
  // A load already in flight for the same kind is reused unless `force`: after a reconnect that
  // one may have been answered before the outage, and would miss what was written during it.
  load(id, xKind, { force = false } = {}) {
    const d = this.runData(id);
    if (!force && d.loading && d.loadingKind === xKind) return d.loading;
    // what was queued so far arrived before this request was sent: its answer holds it
    if (force) d.queued = [];
    d.loadingKind = xKind;
    const p = (async () => {
      try {
        const detail = await fetchDetail(id);
        const names = (detail.series || []).filter((n) => this.wanted.has(n));
        const got = names.length
          ? await fetchSeries(id, names, { x: xKind, points: this.points })
          : { generation: detail.summary?.generation ?? null, series: {} };
        if (d.loading !== p) return; // superseded by a newer load
        d.detail = detail;
        d.generation = got.generation ?? detail.summary?.generation ?? null;
        d.xKind = xKind;
        d.base = new Map();
        for (const [name, s] of Object.entries(got.series)) {
          d.base.set(name, SeriesBuf.from(s.x, s.y, s.count));
        }
        d.decimated = Object.values(got.series).some((s) => s.decimated);
        d.markers = (detail.markers || []).map((m) => ({
          kind: m.kind,
          step: num(m.step),
          t: num(m.t),
          series: m.series ?? null,
        }));
        d.zoom = null;
        d.fetches += 1;
        this.loads += 1;
        d.failures = 0;
      } catch (err) {
        if (d.loading === p) {
          console.warn(`mudpuppy: could not load ${id}: ${err.message}`);
          // The queued points cannot be placed without an answer and nothing else would ask
          // again: drop what is held (the run is not drawn meanwhile) and retry with backoff.
          d.clear();
          d.failures += 1;
          setTimeout(() => {
            if (this.data.get(id) === d && !d.loading && d.xKind === null) this.load(id, xKind);
          }, backoffDelay(d.failures - 1));
        }
      } finally {
        if (d.loading === p) {
          d.loading = null;
          const q = d.queued;
          d.queued = [];
          for (const msg of q) this.applyPoints(msg);
          this.onData(id);
        }
      }
    })();
    d.loading = p;
    return p;
  }

  // A `points` message: append by index; a gap or a new generation means refetch.
  applyPoints(msg) {
    const d = this.data.get(msg.run);
    if (!d) return;
    if (d.loading) {
      d.queued.push(msg);
      return;
    }
    if (!d.xKind) return;
    if (d.generation !== null && msg.generation !== undefined && msg.generation !== d.generation) {
      this.load(msg.run, d.xKind);
      return;
    }
    let changed = false;
    for (const [name, cols] of Object.entries(msg.series || {})) {
      if (!this.wanted.has(name)) continue;
      let buf = d.base.get(name);
      if (!buf) {
        buf = new SeriesBuf();
        d.base.set(name, buf);
      }
      const i0 = cols.i0 ?? 0;
      if (i0 > buf.next) {
        this.load(msg.run, d.xKind); // we missed points: the HTTP answer fills the gap
        return;
      }
      const xs = (d.xKind === "step" ? cols.step : cols.t) || [];
      const ys = cols.y;
      const zb = d.zoom ? d.zoom.bufs.get(name) : null;
      for (let k = 0; k < ys.length; k += 1) {
        const idx = i0 + k;
        const x = num(xs[k]);
        const y = num(ys[k]) ?? NaN;
        // A point without a known x ("NaN" or null time) has no place on the axis; the /series
        // answer leaves it out too. It still counts, so the indices stay in step.
        const placed = typeof x === "number" && Number.isFinite(x);
        if (idx < buf.next) this.dropped += 1;
        else {
          if (placed) buf.push(x, y);
          buf.next = idx + 1;
          changed = true;
        }
        if (zb && idx >= zb.next) {
          if (placed) zb.push(x, y);
          zb.next = idx + 1;
        }
      }
    }
    if (changed) this.onData(msg.run);
  }

  addMarker(runId, m) {
    const d = this.data.get(runId);
    if (!d) return;
    const dup = d.markers.some((o) => o.kind === m.kind && o.step === m.step && o.series === m.series);
    if (!dup) {
      d.markers.push(m);
      this.onData(runId);
    }
  }

  // Finer data for [from, to] (in the buffers' own x units) when what we hold is decimated.
  async loadZoom(id, from, to, points) {
    const d = this.data.get(id);
    if (!d || !d.decimated || !d.xKind) return;
    const key = `${from}:${to}:${d.xKind}`;
    const names = [...d.base.keys()];
    if (names.length === 0) return;
    d.zoomKey = key;
    try {
      const got = await fetchSeries(id, names, { x: d.xKind, from, to, points });
      if (d.zoomKey !== key) return;
      const bufs = new Map();
      for (const [name, s] of Object.entries(got.series)) bufs.set(name, SeriesBuf.from(s.x, s.y, s.count));
      d.zoom = { key, bufs };
      this.zoomFetches += 1;
      this.onData(id);
    } catch (err) {
      console.warn(`mudpuppy: zoom fetch for ${id} failed: ${err.message}`);
    }
  }

  clearZoom() {
    for (const d of this.data.values()) {
      d.zoom = null;
      d.zoomKey = null;
    }
  }

  // The buffer to draw for a series: zoomed detail when present, else the base.
  buf(id, name) {
    const d = this.data.get(id);
    if (!d) return null;
    if (d.zoom && d.zoom.bufs.has(name)) return d.zoom.bufs.get(name);
    return d.base.get(name) || null;
  }
}
