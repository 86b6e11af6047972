// The runs table: one row per run (the runs the filter shows), with status, step, losses, eval,
// throughput, duration and the config values as columns; sortable by any column; "differs only"
// keeps the config keys whose value is not the same across the overlaid runs. Selection and
// focus are the app's: a checkbox overlays a run, a click on a row focuses it.
//
// Built for thousands of runs: rows are laid out at a fixed height in a scrolling box and only
// those in view (plus a margin) exist in the DOM, reused as the box scrolls; config columns are
// capped at MAX_CONFIG_COLUMNS with a note.

import { el } from "./dom.js";
import { fmtDuration, fmtInt, fmtNum, fmtRate, inert } from "./format.js";
import { runColor } from "./theme.js";
import { canonical, valueText } from "./configs.js";

export const ROW_HEIGHT = 22; // px; also in compare.css (.rt-row)
const OVERSCAN = 8;
export const MAX_CONFIG_COLUMNS = 60;

const num = (v) => (typeof v === "number" ? v : null);

// The fixed columns: id, header, width (px), value for sorting, text for the cell.
export const COLUMNS = [
  { id: "name", label: "run", width: 190, value: (s) => s.name || s.id, text: (s) => s.name || s.id },
  { id: "status", label: "status", width: 86, value: (s) => s.status, text: (s) => s.status },
  { id: "step", label: "step", width: 64, value: (s) => num(s.step), text: (s) => fmtInt(s.step) },
  { id: "best_loss", label: "best loss", width: 84, value: (s) => num(s.best_loss), text: (s) => fmtNum(s.best_loss) },
  { id: "loss", label: "loss", width: 84, value: (s) => num(s.loss), text: (s) => fmtNum(s.loss) },
  {
    id: "best_eval_loss", label: "best eval", width: 84,
    value: (s) => num(s.best_eval_loss), text: (s) => fmtNum(s.best_eval_loss),
  },
  { id: "steps_per_s", label: "steps/s", width: 72, value: (s) => num(s.steps_per_s), text: (s) => fmtRate(s.steps_per_s, "") },
  { id: "tokens_per_s", label: "tokens/s", width: 80, value: (s) => num(s.tokens_per_s), text: (s) => fmtRate(s.tokens_per_s, "") },
  { id: "elapsed_s", label: "duration", width: 80, value: (s) => num(s.elapsed_s), text: (s) => fmtDuration(s.elapsed_s) },
];
const CONFIG_WIDTH = 96;
const CHECK_WIDTH = 26;

// Ascending order of two sort values: numbers by value, text by locale; missing and NaN last
// (in both directions, so blanks never lead), ties by id.
export function compareValues(a, b) {
  const missA = a === null || a === undefined || (typeof a === "number" && Number.isNaN(a));
  const missB = b === null || b === undefined || (typeof b === "number" && Number.isNaN(b));
  if (missA || missB) return missA === missB ? 0 : missA ? 1 : -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

// Sort rows [{id, s, cfg}] by a column ({id, dir: 1 | -1}); config columns are "cfg:<key>".
export function sortRows(rows, sort) {
  const col = COLUMNS.find((c) => c.id === sort.col);
  const key = sort.col.startsWith("cfg:") ? sort.col.slice(4) : null;
  const val = col ? (r) => col.value(r.s) : (r) => configSortValue(r.cfg ? r.cfg[key] : undefined);
  const keyed = rows.map((r) => ({ r, v: val(r) }));
  keyed.sort((p, q) => {
    const missP = p.v === null || p.v === undefined || Number.isNaN(p.v);
    const missQ = q.v === null || q.v === undefined || Number.isNaN(q.v);
    if (missP || missQ) return missP === missQ ? (p.r.id < q.r.id ? -1 : 1) : missP ? 1 : -1;
    const c = compareValues(p.v, q.v) * sort.dir;
    return c || (p.r.id < q.r.id ? -1 : p.r.id > q.r.id ? 1 : 0);
  });
  return keyed.map((k) => k.r);
}

function configSortValue(v) {
  if (v === undefined || v === null) return null;
  if (typeof v === "number") return v;
  if (typeof v === "boolean") return v ? 1 : 0;
  return typeof v === "string" ? v : canonical(v);
}

// Cells are written only where they change: a row refilled for another run keeps most classes,
// and every attribute write costs style work on the next layout.
function setCell(c, text, cls, title) {
  text = inert(text); // names and config values come from the runs' files
  title = inert(title);
  if (c.textContent !== text) c.textContent = text;
  if (c.className !== cls) c.className = cls;
  if (c.title !== title) c.title = title;
}

function setStyle(c, prop, value) {
  // read back, a style is normalised ("rgb(...)"): compare with what was written instead
  const key = `mp_${prop}`;
  if (c[key] === value) return;
  c[key] = value;
  c.style[prop] = value;
}

export class RunsTable {
  // root: the element the table lives in; handlers: {onToggle(id, on), onFocus(id), onSort()}
  constructor(root, { onToggle, onFocus, onSort }) {
    this.onToggle = onToggle;
    this.onFocus = onFocus;
    this.onSort = onSort;
    this.sort = { col: "name", dir: 1 };
    this.rows = []; // sorted [{id, s, cfg}]
    this.columns = []; // the column ids shown, in order
    this.configKeys = [];
    this.hiddenKeys = 0;
    this.selected = new Set();
    this.focused = null;
    this.pool = []; // reusable row elements
    this.renderTimes = [];
    this.scroll = el("div", "rt-scroll");
    this.head = el("div", "rt-head");
    this.body = el("div", "rt-body");
    this.note = el("div", "note rt-note");
    this.scroll.append(this.head, this.body);
    root.append(this.scroll, this.note);
    // the box's scroll offset and height, kept from events: an update never reads layout (a
    // read after the frame's DOM writes would force the whole page to be laid out again)
    this.viewTop = 0;
    this.viewHeight = 320;
    this.scroll.addEventListener("scroll", () => {
      this.viewTop = this.scroll.scrollTop;
      this.paint();
    });
    new ResizeObserver((entries) => {
      const h = entries[entries.length - 1].contentRect.height;
      if (h > 0 && h !== this.viewHeight) {
        this.viewHeight = h;
        this.paint();
      }
    }).observe(this.scroll);
    this.headSig = "";
  }

  // rows: [{id, s (summary), cfg (flattened config or null)}]; keys: the config keys to show.
  update(rows, keys, selected, focused) {
    const t0 = performance.now();
    this.selected = selected;
    this.focused = focused;
    this.configKeys = keys.slice(0, MAX_CONFIG_COLUMNS);
    this.hiddenKeys = Math.max(0, keys.length - MAX_CONFIG_COLUMNS);
    this.rows = sortRows(rows, this.sort);
    this.columns = COLUMNS.map((c) => c.id).concat(this.configKeys.map((k) => `cfg:${k}`));
    this.renderHead();
    this.body.style.height = `${this.rows.length * ROW_HEIGHT}px`;
    this.note.textContent = this.hiddenKeys
      ? `${this.hiddenKeys} more config keys not shown (turn on "differs only")`
      : rows.length
        ? ""
        : "no runs match the filter";
    this.paint();
    this.renderTimes.push(performance.now() - t0);
    if (this.renderTimes.length > 200) this.renderTimes.shift();
  }

  template() {
    const widths = [CHECK_WIDTH, ...COLUMNS.map((c) => c.width), ...this.configKeys.map(() => CONFIG_WIDTH)];
    return widths.map((w) => `${w}px`).join(" ");
  }

  renderHead() {
    const sig = `${this.columns.join("\u0000")}|${this.sort.col}|${this.sort.dir}`;
    if (sig === this.headSig) return;
    this.headSig = sig;
    const tpl = this.template();
    this.scroll.style.setProperty("--rt-cols", tpl);
    this.scroll.style.setProperty("--rt-width", `${tpl.split(" ").reduce((a, w) => a + parseFloat(w), 0)}px`);
    this.head.textContent = "";
    this.head.append(el("span", "rt-cell"));
    const cells = COLUMNS.map((c) => [c.id, c.label, c.label]).concat(
      this.configKeys.map((k) => [`cfg:${k}`, k, `config ${k}`]),
    );
    for (const [id, label, title] of cells) {
      const h = el("button", `rt-cell rt-sort${id.startsWith("cfg:") ? " cfg" : ""}`);
      h.type = "button";
      h.dataset.col = id;
      h.title = inert(`${title}: click to sort`);
      const mark = this.sort.col === id ? (this.sort.dir > 0 ? " \u25b2" : " \u25bc") : "";
      h.textContent = inert(label) + mark;
      h.classList.toggle("on", this.sort.col === id);
      h.addEventListener("click", () => {
        this.setSort(id, this.sort.col === id ? -this.sort.dir : 1);
        this.onSort();
      });
      this.head.append(h);
    }
  }

  setSort(col, dir) {
    this.sort = { col, dir: dir < 0 ? -1 : 1 };
    this.headSig = "";
  }

  // Lay out the rows in view; a row element is refilled only when what it shows changed.
  paint() {
    const top = this.viewTop;
    const height = this.viewHeight;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const need = last - first;
    while (this.pool.length < need) this.pool.push(this.makeRow());
    for (let i = 0; i < this.pool.length; i += 1) {
      const r = this.pool[i];
      if (i >= need) {
        if (r.li.parentNode) r.li.remove();
        r.sig = "";
        continue;
      }
      const row = this.rows[first + i];
      if (!r.li.parentNode) this.body.append(r.li);
      const top = `${(first + i) * ROW_HEIGHT}px`;
      if (r.top !== top) {
        r.top = top;
        r.li.style.top = top;
      }
      this.fill(r, row);
    }
  }

  makeRow() {
    const li = el("div", "rt-row");
    const cb = document.createElement("input");
    cb.type = "checkbox";
    cb.title = "overlay this run";
    cb.addEventListener("click", (ev) => ev.stopPropagation());
    cb.addEventListener("change", () => this.onToggle(li.dataset.id, cb.checked));
    const check = el("span", "rt-cell", cb);
    li.append(check);
    li.addEventListener("click", () => this.onFocus(li.dataset.id));
    return { li, cb, cells: [], sig: "" };
  }

  fill(r, row) {
    const { s, cfg } = row;
    const sel = this.selected.has(row.id);
    const sig = [
      row.id, this.headSig, sel, this.focused === row.id, s.status, s.step, s.loss, s.best_loss,
      s.best_eval_loss, s.steps_per_s, s.tokens_per_s, s.elapsed_s, s.name, cfg ? 1 : 0,
    ].join("|");
    if (sig === r.sig && r.cfg === cfg) return;
    r.sig = sig;
    r.cfg = cfg;
    r.li.dataset.id = row.id;
    r.li.classList.toggle("selected", sel);
    r.li.classList.toggle("focused", this.focused === row.id);
    r.cb.checked = sel;
    const want = COLUMNS.length + this.configKeys.length;
    while (r.cells.length < want) {
      const c = el("span", "rt-cell");
      r.cells.push(c);
      r.li.append(c);
    }
    while (r.cells.length > want) r.cells.pop().remove();
    COLUMNS.forEach((col, i) => {
      const v = col.value(s);
      const bad = typeof v === "number" && !Number.isFinite(v);
      const cls = `rt-cell c-${col.id}${col.id === "status" ? ` st-text-${s.status}` : ""}${bad ? " bad" : ""}`;
      setCell(r.cells[i], col.text(s), cls, col.id === "name" ? row.id : "");
      if (col.id === "name") setStyle(r.cells[i], "borderLeftColor", runColor(row.id));
    });
    this.configKeys.forEach((k, j) => {
      const has = cfg && Object.prototype.hasOwnProperty.call(cfg, k);
      const text = has ? valueText(cfg[k], 24) : cfg ? "\u2014" : "";
      setCell(r.cells[COLUMNS.length + j], text, "rt-cell cfg", has ? `${k} = ${valueText(cfg[k], 400)}` : "");
    });
  }

  // What tests and the benchmark read.
  stats() {
    const times = this.renderTimes;
    return {
      rows: this.rows.map((r) => r.id),
      columns: this.columns,
      configKeys: this.configKeys,
      sort: { ...this.sort },
      domRows: this.body.childElementCount,
      renderMs: times.length ? times[times.length - 1] : null,
      renders: times.length,
    };
  }
}
