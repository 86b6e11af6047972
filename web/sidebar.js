// The runs sidebar: status light, source badge, name, step/max, last loss and a sparkline per
// run; a regex filter; checkboxes choose the overlaid runs; a click on a row focuses its run.
// Rows are updated in place (keyed by run id), never rebuilt, so nothing flickers.

import { fmtNum, fmtStepOf } from "./format.js";
import { drawSparkline } from "./sparkline.js";
import { el } from "./dom.js";
import { loadingText } from "./loading.js";
import { runColor } from "./theme.js";

const SOURCE_BADGE = { native: "NAT", "hf-trainer-state": "HF", llamafactory: "LLF" };
const SOURCE_TITLE = {
  native: "mudpuppy callback (events.jsonl)",
  "hf-trainer-state": "HF Trainer trainer_state.json",
  llamafactory: "LLaMA-Factory trainer_log.jsonl",
};
const SPARK_MAX = 60;

// A filter that is a regex when it parses, else a plain case-insensitive substring.
export function makeFilter(text) {
  const t = text.trim();
  if (!t) return { ok: true, test: () => true };
  try {
    const re = new RegExp(t, "i");
    return { ok: true, test: (s) => re.test(s) };
  } catch (err) {
    const low = t.toLowerCase();
    return { ok: false, test: (s) => s.toLowerCase().includes(low) };
  }
}

export class Sidebar {
  constructor(root, { onToggle, onFocus, onFilter }) {
    this.list = root.querySelector("#run-list");
    this.filterInput = root.querySelector("#run-filter");
    this.countEl = root.querySelector("#run-count");
    this.rows = new Map();
    this.spark = new Map(); // id -> recent loss values
    this.filter = makeFilter("");
    this.filterInput.addEventListener("input", () => {
      this.filter = makeFilter(this.filterInput.value);
      this.filterInput.classList.toggle("bad", !this.filter.ok);
      onFilter();
    });
    this.onToggle = onToggle;
    this.onFocus = onFocus;
    root.querySelector("#select-all").addEventListener("click", () => onToggle(null, true));
    root.querySelector("#select-none").addEventListener("click", () => onToggle(null, false));
  }

  matches(s) {
    return this.filter.test(s.name || s.id) || this.filter.test(s.id);
  }

  hasSpark(id) {
    return this.spark.has(id);
  }

  seedSpark(id, values) {
    this.spark.set(id, Array.from(values).slice(-SPARK_MAX));
  }

  pushSpark(id, loss) {
    if (loss === null || loss === undefined) return;
    const arr = this.spark.get(id) || [];
    if (arr.length && Object.is(arr[arr.length - 1], loss)) return;
    arr.push(loss);
    if (arr.length > SPARK_MAX) arr.shift();
    this.spark.set(id, arr);
  }

  row(id) {
    let r = this.rows.get(id);
    if (r) return r;
    const li = el("li", "run");
    li.dataset.id = id;
    const cb = document.createElement("input");
    cb.type = "checkbox";
    cb.title = "overlay this run";
    cb.addEventListener("click", (ev) => ev.stopPropagation());
    cb.addEventListener("change", () => this.onToggle(id, cb.checked));
    const light = el("span", "light");
    const badge = el("span", "badge");
    const name = el("span", "name");
    const steps = el("span", "steps");
    const loss = el("span", "loss");
    const canvas = el("canvas", "spark");
    const top = el("div", "row1");
    top.append(cb, light, badge, name);
    const bottom = el("div", "row2");
    bottom.append(steps, loss, canvas);
    li.append(top, bottom);
    li.addEventListener("click", () => this.onFocus(id));
    r = { li, cb, light, badge, name, steps, loss, canvas, sig: "" };
    this.rows.set(id, r);
    return r;
  }

  // Bring the list in line with the summaries; cheap when nothing changed (signature check).
  render(summaries, selected, focused) {
    const ids = [...summaries.keys()].sort();
    const keep = new Set(ids);
    for (const [id, r] of this.rows) {
      if (!keep.has(id)) {
        r.li.remove();
        this.rows.delete(id);
        this.spark.delete(id);
      }
    }
    let shown = 0;
    let prev = null;
    for (const id of ids) {
      const s = summaries.get(id);
      const r = this.row(id);
      const visible = this.matches(s);
      if (visible) shown += 1;
      const spark = this.spark.get(id) || [];
      const loading = loadingText(s); // its backlog is still being read: no step yet
      const sig = [
        s.status, s.step, s.max_steps, s.loss, s.name, s.source, selected.has(id), focused === id,
        visible, spark.length, spark[spark.length - 1], s.bad_lines, s.nonfinite, loading,
      ].join("|");
      // keep DOM order = sorted order
      if (prev ? prev.nextSibling !== r.li : this.list.firstChild !== r.li) {
        if (prev) prev.after(r.li);
        else this.list.prepend(r.li);
      }
      prev = r.li;
      if (sig === r.sig) continue;
      r.sig = sig;
      const color = runColor(id);
      r.li.style.borderLeftColor = color;
      r.li.classList.toggle("hidden", !visible);
      r.li.classList.toggle("focused", focused === id);
      r.cb.checked = selected.has(id);
      r.light.className = `light st-${loading ? "loading" : s.status}`;
      r.light.title = loading || s.status;
      r.badge.textContent = SOURCE_BADGE[s.source] || "?";
      r.badge.title = SOURCE_TITLE[s.source] || s.source;
      r.name.textContent = s.name || id;
      r.name.title = id + (s.bad_lines ? ` (${s.bad_lines} bad lines skipped)` : "");
      r.steps.textContent = loading || fmtStepOf(s.step, s.max_steps);
      r.loss.textContent = s.loss === null || s.loss === undefined ? "" : `loss ${fmtNum(s.loss)}`;
      r.loss.classList.toggle("nonfinite", typeof s.loss === "number" && !Number.isFinite(s.loss));
      drawSparkline(r.canvas, spark, color, { width: 70, height: 16 });
    }
    this.countEl.textContent = `${shown}/${ids.length}`;
  }
}
