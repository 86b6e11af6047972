// Loads of many runs gathered into few requests. Every ask made in the same task (a loop over
// the overlaid runs) is sent together as one POST api/series per MAX_RUNS runs and per query;
// each ask is answered with its run's entry, or null when the daemon does not know the run.

import { fetchBatch } from "./api.js";

export const MAX_RUNS = 100; // the daemon takes up to 200 a request

export class Batcher {
  constructor(fetchFn = fetchBatch) {
    this.fetch = fetchFn;
    this.groups = new Map(); // query key -> {query, asks: Map(id -> [{resolve, reject}])}
    this.scheduled = false;
    this.requests = 0; // requests sent, over the page's life
  }

  // query: {names (sorted), x, points, from, to}. Runs asked with equal queries share requests.
  ask(id, query) {
    const key = JSON.stringify([query.names, query.x, query.points, query.from ?? null, query.to ?? null]);
    let group = this.groups.get(key);
    if (!group) {
      group = { query, asks: new Map() };
      this.groups.set(key, group);
    }
    const asks = group.asks.get(id) || [];
    group.asks.set(id, asks);
    const p = new Promise((resolve, reject) => asks.push({ resolve, reject }));
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
    return p;
  }

  flush() {
    this.scheduled = false;
    const groups = [...this.groups.values()];
    this.groups.clear();
    for (const { query, asks } of groups) {
      const ids = [...asks.keys()];
      for (let i = 0; i < ids.length; i += MAX_RUNS) this.send(query, ids.slice(i, i + MAX_RUNS), asks);
    }
  }

  async send(query, ids, asks) {
    this.requests += 1;
    let got;
    try {
      got = await this.fetch(ids, query);
    } catch (err) {
      for (const id of ids) for (const a of asks.get(id)) a.reject(err);
      return;
    }
    for (const id of ids) {
      const entry = got.runs.get(id) || null;
      for (const a of asks.get(id)) a.resolve(entry);
    }
  }
}
