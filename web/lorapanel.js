// LoRA panel for the focused run: heatmap of layer x step norms (A, B or the update B@A), layer
// names on hover, the latest values as bars, and the adapters still near zero.

import { fetchLora, num } from "./api.js";
import { fmtInt, fmtNum } from "./format.js";
import { drawHeatmap, hitHeatmap } from "./heatmap.js";

const MAX_COLUMNS = 400; // bounded memory: older columns are thinned past this

export class LoraPanel {
  constructor(root, { schedule }) {
    this.root = root;
    this.canvas = root.querySelector("#lora-canvas");
    this.wrap = root.querySelector("#lora-wrap");
    this.tip = root.querySelector("#lora-tip");
    this.note = root.querySelector("#lora-note");
    this.empty = root.querySelector("#lora-empty");
    this.schedule = schedule;
    this.mode = "update";
    this.runId = null;
    this.m = null; // {layers, steps: [], A, B, update: rows of arrays}
    this.geo = null;
    this.seq = 0;
    this.fetches = 0;
    this.hasLora = null;
    this.fetching = false; // a fetch of the matrix is in flight
    this.queued = []; // lora messages that arrived meanwhile
    for (const b of root.querySelectorAll("[data-lora-mode]")) {
      b.addEventListener("click", () => {
        this.mode = b.dataset.loraMode;
        for (const o of root.querySelectorAll("[data-lora-mode]")) o.classList.toggle("on", o === b);
        this.schedule();
      });
    }
    this.canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    this.canvas.addEventListener("mouseleave", () => this.tip.classList.remove("on"));
  }

  // hasLora: true / false from the run's detail, or null while that is not known yet (the app
  // calls again once it is); only runs with LoRA layers are asked, so no request answers 404.
  async focus(runId, hasLora) {
    const same = runId === this.runId && this.m && hasLora;
    this.runId = runId;
    this.hasLora = hasLora;
    if (!same) this.m = null;
    const seq = ++this.seq;
    this.fetching = false;
    this.queued = [];
    this.schedule();
    if (!runId || !hasLora) return;
    this.fetching = true;
    try {
      const got = await fetchLora(runId, MAX_COLUMNS);
      if (seq !== this.seq) return;
      this.m = {
        layers: got.layers,
        steps: Array.from(got.steps),
        A: got.A.map((r) => Array.from(r)),
        B: got.B.map((r) => Array.from(r)),
        update: got.update.map((r) => Array.from(r)),
      };
      this.fetches += 1;
    } catch (err) {
      if (seq === this.seq) console.warn(`mudpuppy: LoRA norms of ${runId}: ${err.message}`);
    } finally {
      if (seq === this.seq) {
        this.fetching = false;
        // columns streamed while the answer was on its way: those past its last step are new
        const q = this.queued;
        this.queued = [];
        if (this.m) for (const msg of q) this.addColumn(msg);
      }
    }
    this.schedule();
  }

  // Is the panel showing `runId` and waiting for its detail to say whether it has LoRA layers?
  awaitsDetail(runId) {
    return this.runId === runId && this.hasLora === null;
  }

  stats() {
    const m = this.m;
    return {
      run: this.runId,
      mode: this.drawnMode || null, // what the heatmap shows now (set by draw)
      layers: m ? m.layers.length : 0,
      steps: m ? m.steps.length : 0,
      nearZero: this.geo ? [...this.geo.zero].map((i) => m.layers[i]) : [],
      fetches: this.fetches,
    };
  }

  // A `lora` message for the focused run: one new column.
  addColumn(msg) {
    if (msg.run !== this.runId) return;
    if (!this.fetching && !this.m) this.focus(this.runId, true); // the first norms of this run
    if (this.fetching) {
      this.queued.push(msg); // replayed once the matrix is here
      return;
    }
    if (!this.m) return;
    const names = Object.keys(msg.layers || {});
    if (names.some((n) => !this.m.layers.includes(n))) {
      this.focus(this.runId, true); // new layers: take the server's matrix
      return;
    }
    const m = this.m;
    if (m.steps.length && msg.step <= m.steps[m.steps.length - 1]) return; // already have it
    m.steps.push(msg.step);
    m.layers.forEach((name, i) => {
      const cell = msg.layers[name] || {};
      for (const k of ["A", "B", "update"]) {
        if (!m[k][i]) m[k][i] = [];
        m[k][i].push(cell[k] === undefined ? NaN : num(cell[k]) ?? NaN);
      }
    });
    if (m.steps.length > MAX_COLUMNS) {
      // drop every other column of the older half
      const keep = (arr) => arr.filter((_, j) => j >= arr.length / 2 || j % 2 === 0);
      m.steps = keep(m.steps);
      for (const k of ["A", "B", "update"]) m[k] = m[k].map(keep);
    }
    this.schedule();
  }

  draw() {
    const m = this.m;
    const has = m && m.layers.length > 0 && m.steps.length > 0;
    this.empty.classList.toggle("on", !has);
    this.wrap.classList.toggle("off", !has);
    if (!has) {
      this.empty.textContent = this.runId ? "no LoRA norms logged for this run" : "focus a run to see its adapters";
      this.note.textContent = "";
      this.geo = null;
      return;
    }
    const rows = m[this.mode] && m[this.mode].length ? m[this.mode] : m.update;
    this.drawnMode = this.mode;
    const r = this.wrap.getBoundingClientRect();
    const h = Math.max(80, Math.min(360, m.layers.length * 6));
    this.geo = drawHeatmap(this.canvas, { layers: m.layers, steps: m.steps, rows }, Math.max(100, Math.floor(r.width)), h);
    const zero = this.geo ? this.geo.zero.size : 0;
    this.note.textContent = `${m.layers.length} adapters \u00b7 ${m.steps.length} logs \u00b7 ${zero ? `${zero} near zero` : "none near zero"}`;
    this.note.classList.toggle("warn", zero > 0);
  }

  hover(ev) {
    const box = this.canvas.getBoundingClientRect();
    const hit = hitHeatmap(this.geo, ev.clientX - box.left, ev.clientY - box.top);
    if (!hit || !this.m) {
      this.tip.classList.remove("on");
      return;
    }
    const m = this.m;
    const rows = m[this.mode] && m[this.mode].length ? m[this.mode] : m.update;
    const name = m.layers[hit.row];
    let text;
    if (hit.bar) {
      text = `${name}\nlatest ${this.mode} ${fmtNum(this.geo.latest[hit.row])}${this.geo.zero.has(hit.row) ? "  NEAR ZERO" : ""}`;
    } else {
      text = `${name}\nstep ${fmtInt(m.steps[hit.col])} \u00b7 ${this.mode} ${fmtNum(rows[hit.row][hit.col])}`;
    }
    this.tip.textContent = text;
    this.tip.style.left = `${Math.min(ev.clientX - box.left + 12, box.width - 220)}px`;
    this.tip.style.top = `${ev.clientY - box.top + 12}px`;
    this.tip.classList.add("on");
  }
}
