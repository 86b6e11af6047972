// The runs' configs as the daemon flattens them (GET api/config-diff: dotted keys), and the
// comparisons the table and the grouping make over any subset of runs. Equality follows the
// daemon's rules (docs/core.md): 1 and 1.0 are equal (JSON numbers), true is not 1, "NaN" equals
// "NaN", a key one run lacks differs.

import { getJson } from "./api.js";

// A value in one short line: numbers as JavaScript writes them, lists and objects JSON-like.
export function valueText(v, width = 40) {
  let t;
  if (v === null || v === undefined) t = v === null ? "null" : "";
  else if (typeof v === "string") t = v;
  else if (Array.isArray(v)) t = `[${v.map((x) => valueText(x, width)).join(", ")}]`;
  else if (typeof v === "object") t = `{${Object.entries(v).map(([k, x]) => `${k}: ${valueText(x, width)}`).join(", ")}}`;
  else t = String(v);
  return t.length <= width ? t : `${t.slice(0, Math.max(1, width - 1))}\u2026`;
}

// A string under which equal values are equal (object keys sorted).
export function canonical(v) {
  if (v === undefined) return "\u0000absent";
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

export class Configs {
  constructor({ onChange }) {
    this.onChange = onChange;
    this.values = new Map(); // run id -> {dotted key: value}
    this.loading = null;
    this.again = false;
    this.timer = null;
    this.fetches = 0;
    this.failed = false;
    this.memo = null; // the last differing() answer: {key, keys}
  }

  // The flattened config of a run, or null while it is not known.
  of(id) {
    return this.values.get(id) || null;
  }

  // Ask again (soon) when a run is not known yet: runs appear while the page is open.
  need(ids) {
    for (const id of ids) {
      if (!this.values.has(id)) {
        this.refreshSoon();
        return;
      }
    }
  }

  refreshSoon(delayMs = 300) {
    if (this.timer !== null || this.failed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refresh();
    }, delayMs);
  }

  async refresh() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = (async () => {
      try {
        const body = await getJson("api/config-diff");
        this.values = new Map(Object.entries(body.values || {}));
        this.fetches += 1;
        this.memo = null;
      } catch (err) {
        console.warn(`mudpuppy: config-diff failed: ${err.message}`);
        // not again on every frame: a daemon without the route (or an outage) stays quiet
        this.failed = true;
        setTimeout(() => {
          this.failed = false;
        }, 10000);
      } finally {
        this.loading = null;
        this.onChange();
        if (this.again) {
          this.again = false;
          this.refresh();
        }
      }
    })();
    return this.loading;
  }

  // Every key of these runs, sorted.
  keys(ids) {
    const out = new Set();
    for (const id of ids) for (const k of Object.keys(this.of(id) || {})) out.add(k);
    return [...out].sort();
  }

  // The keys, sorted, whose value is not the same in every one of these runs (none for < 2).
  // Asked every frame the runs change: the last answer is kept until the runs or the configs do.
  differing(ids) {
    const known = ids.filter((id) => this.values.has(id));
    if (known.length < 2) return [];
    const key = known.join("\u0000");
    if (this.memo && this.memo.key === key) return this.memo.keys;
    const keys = this.keys(known).filter((k) => {
      const first = canonical(this.of(known[0])[k]);
      return known.some((id) => canonical(this.of(id)[k]) !== first);
    });
    this.memo = { key, keys };
    return keys;
  }
}
