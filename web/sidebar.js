// The runs sidebar: status light, source badge, name, step/max, last loss and a sparkline per
// run; a regex filter; checkboxes choose the overlaid runs; a click on a row focuses its run.
// Rows are updated in place (keyed by run id), never rebuilt, so nothing flickers. The list is
// virtual: only the rows in view (and a few either side) are in the DOM, the space of the others
// is padding, so 10,000 runs cost what 30 do.

import { fmtNum, fmtStepOf, inert } from "./format.js";
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
const ROW_PX = 43; // a row's height plus its margin (style.css: .run), until measured
const OVERSCAN = 8; // rows kept in the DOM beyond each edge of the view

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
  constructor(root, { onToggle, onFocus, onFilter, onScroll }) {
    this.list = root.querySelector("#run-list");
    this.scroller = root.querySelector("#run-scroll");
    this.filterInput = root.querySelector("#run-filter");
    this.countEl = root.querySelector("#run-count");
    this.noteEl = root.querySelector("#run-note");
    this.rows = new Map(); // id -> row, for the rows in the DOM only
    this.spark = new Map(); // id -> recent loss values
    this.filter = makeFilter("");
    this.rowPx = 0; // measured from the first row drawn
    this.cache = { key: null, ids: [], total: 0 }; // the shown ids, sorted
    this.filterInput.addEventListener("input", () => {
      this.filter = makeFilter(this.filterInput.value);
      this.filterInput.classList.toggle("bad", !this.filter.ok);
      onFilter();
    });
    this.scroller.addEventListener("scroll", () => onScroll(), { passive: true });
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

  // The ids the filter shows, sorted, recomputed only when the runs, their names or the
  // filter changed (version: the store's listVersion).
  shownIds(summaries, version) {
    const key = `${version}\u0000${summaries.size}\u0000${this.filterInput.value}`;
    if (this.cache.key !== key) {
      const ids = [...summaries.keys()].sort().filter((id) => this.matches(summaries.get(id)));
      this.cache = { key, ids, total: summaries.size };
    }
    return this.cache.ids;
  }

  // Bring the rows in view in line with the summaries; cheap when nothing changed (signature
  // check per row in view).
  render(summaries, selected, focused, version = 0) {
    const ids = this.shownIds(summaries, version);
    const rowPx = this.rowPx || ROW_PX;
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 900;
    const first = Math.max(0, Math.floor(top / rowPx) - OVERSCAN);
    const last = Math.min(ids.length, Math.ceil((top + height) / rowPx) + OVERSCAN);
    const inView = ids.slice(first, last);
    const keep = new Set(inView);
    for (const [id, r] of this.rows) {
      if (!keep.has(id)) {
        r.li.remove();
        this.rows.delete(id);
      }
    }
    for (const id of this.spark.keys()) if (!summaries.has(id)) this.spark.delete(id);
    let prev = null;
    for (const id of inView) {
      const s = summaries.get(id);
      const r = this.row(id);
      const spark = this.spark.get(id) || [];
      const loading = loadingText(s); // its backlog is still being read: no step yet
      const sig = [
        s.status, s.step, s.max_steps, s.loss, s.name, s.source, selected.has(id), focused === id,
        spark.length, spark[spark.length - 1], s.bad_lines, s.nonfinite, loading,
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
      r.li.classList.toggle("focused", focused === id);
      r.cb.checked = selected.has(id);
      r.light.className = `light st-${loading ? "loading" : s.status}`;
      r.light.title = loading || s.status;
      r.badge.textContent = SOURCE_BADGE[s.source] || "?";
      r.badge.title = SOURCE_TITLE[s.source] || inert(s.source);
      r.name.textContent = inert(s.name || id);
      r.name.title = inert(id) + (s.bad_lines ? ` (${s.bad_lines} bad lines skipped)` : "");
      r.steps.textContent = loading || fmtStepOf(s.step, s.max_steps);
      r.loss.textContent = s.loss === null || s.loss === undefined ? "" : `loss ${fmtNum(s.loss)}`;
      r.loss.classList.toggle("nonfinite", typeof s.loss === "number" && !Number.isFinite(s.loss));
      drawSparkline(r.canvas, spark, color, { width: 70, height: 16 });
    }
    if (!this.rowPx && prev) {
      const measured = prev.offsetHeight + parseFloat(getComputedStyle(prev).marginBottom || "0");
      if (measured > 0) this.rowPx = measured;
    }
    // the rows out of view as padding: the scrollbar covers every shown run
    this.list.style.paddingTop = `${first * (this.rowPx || ROW_PX)}px`;
    this.list.style.paddingBottom = `${(ids.length - last) * (this.rowPx || ROW_PX)}px`;
    this.countEl.textContent = `${ids.length}/${summaries.size}`;
  }

  // Under the filter: how many runs are overlaid, and whether the page chose them.
  renderNote(overlaid, auto) {
    const shown = this.cache.ids.length;
    const text = auto && shown > overlaid
      ? `${overlaid} most recent of ${shown} overlaid \u00b7 all overlays every shown run`
      : "";
    if (this.noteEl.textContent !== text) this.noteEl.textContent = text;
  }
}
