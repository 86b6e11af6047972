// The view as a URL fragment, so a reload or a pasted link shows the same picture:
//
//   #sel=a&sel=b&focus=a&group=key:lr&band=std&smooth=0.6&logy=1&x=rel&zoom=100,250
//    &filter=seed&table=1&sort=best_loss:asc&diff=1&variant=thru:1
//
// Every field is optional and a missing one means the page's default (`sel` absent: runs are
// picked automatically, as on a fresh load). `#run=<id>` (the form notifications link to)
// focuses that run and overlays it. parseState and formatState are pure (parse never throws,
// whatever the text); UrlSync keeps the page and the fragment in step.

import { parseGroup, groupText } from "./grouping.js";

const X_MODES = ["step", "rel", "wall"];

export function defaultState() {
  return {
    sel: null, // null: automatic; else the overlaid run ids
    focus: null,
    run: null, // from `#run=<id>`: focus and overlay this run
    group: null, // {by, value}
    band: "minmax",
    smooth: 0,
    logy: false,
    x: "step",
    zoom: null, // [x0, x1] in display units
    filter: "",
    table: false,
    sort: null, // {col, dir}
    diff: false,
    variants: {}, // chart id -> variant index
  };
}

function finite(text) {
  if (typeof text !== "string" || text.trim() === "") return null;
  const v = Number(text);
  return Number.isFinite(v) ? v : null;
}

// The state a fragment (with or without the leading "#") asks for.
export function parseState(hash) {
  const st = defaultState();
  let q;
  try {
    q = new URLSearchParams(String(hash || "").replace(/^#/, ""));
  } catch (err) {
    return st;
  }
  if (q.has("sel")) st.sel = q.getAll("sel").filter((s) => s !== "");
  st.focus = q.get("focus") || null;
  st.run = q.get("run") || null;
  st.group = parseGroup(q.get("group"));
  if (q.get("band") === "std") st.band = "std";
  const sm = finite(q.get("smooth"));
  if (sm !== null) st.smooth = Math.min(0.99, Math.max(0, sm));
  st.logy = q.get("logy") === "1";
  if (X_MODES.includes(q.get("x"))) st.x = q.get("x");
  const z = (q.get("zoom") || "").split(",");
  if (z.length === 2) {
    const a = finite(z[0]);
    const b = finite(z[1]);
    if (a !== null && b !== null && b > a) st.zoom = [a, b];
  }
  st.filter = q.get("filter") || "";
  st.table = q.get("table") === "1";
  const sort = (q.get("sort") || "").match(/^(.+):(asc|desc)$/);
  if (sort) st.sort = { col: sort[1], dir: sort[2] === "desc" ? -1 : 1 };
  st.diff = q.get("diff") === "1";
  for (const v of q.getAll("variant")) {
    const m = v.match(/^([\w-]+):(\d+)$/);
    if (m) st.variants[m[1]] = Number(m[2]);
  }
  return st;
}

// The fragment (without "#") for a state; defaults are left out, numbers keep every digit
// (String(x) reads back as the same double), so a restored zoom is the same zoom.
export function formatState(st) {
  const q = new URLSearchParams();
  if (st.sel) for (const id of st.sel) q.append("sel", id);
  if (st.focus) q.set("focus", st.focus);
  if (st.group) q.set("group", groupText(st.group));
  if (st.group && st.band === "std") q.set("band", "std");
  if (st.smooth) q.set("smooth", String(st.smooth));
  if (st.logy) q.set("logy", "1");
  if (st.x !== "step") q.set("x", st.x);
  if (st.zoom) q.set("zoom", `${String(st.zoom[0])},${String(st.zoom[1])}`);
  if (st.filter) q.set("filter", st.filter);
  if (st.table) q.set("table", "1");
  if (st.sort) q.set("sort", `${st.sort.col}:${st.sort.dir < 0 ? "desc" : "asc"}`);
  if (st.diff) q.set("diff", "1");
  for (const [id, v] of Object.entries(st.variants || {})) if (v) q.append("variant", `${id}:${v}`);
  return q.toString();
}

const WRITE_DELAY_MS = 150;

// Keeps the URL fragment and the page in step: reads the fragment once at start (the parts that
// need no runs at once, the focus and the zoom after the first snapshot), writes the fragment as
// the view changes (replaceState, at most every WRITE_DELAY_MS), and applies a fragment edited
// by hand. `parts` owns the compare bar's share of the state: {viewParts(), applyParts(st)}.
export class UrlSync {
  constructor(app, parts) {
    this.app = app;
    this.parts = parts;
    this.ready = false;
    this.written = null;
    this.timer = null;
    this.pending = parseState(window.location.hash);
    this.apply(this.pending, true);
    window.addEventListener("hashchange", () => {
      if (window.location.hash.replace(/^#/, "") === this.written) return;
      const st = parseState(window.location.hash);
      this.apply(st, false);
      this.applyRuns(st);
    });
  }

  current() {
    const app = this.app;
    return {
      ...defaultState(),
      ...this.parts.viewParts(),
      sel: app.selectionTouched ? [...app.selected].sort() : null,
      focus: app.focused,
      smooth: app.opts.smoothing,
      logy: app.opts.logY,
      x: app.opts.xMode,
      zoom: app.view ? [app.view.x0, app.view.x1] : null,
      variants: Object.fromEntries(app.variant || []),
    };
  }

  fragment() {
    return formatState(this.current());
  }

  link() {
    const frag = this.fragment();
    const base = window.location.href.split("#")[0];
    return frag ? `${base}#${frag}` : base;
  }

  // Once per drawn frame: write the fragment when the view changed (not before the link's own
  // state is applied, which would overwrite it).
  frame() {
    if (!this.ready || this.timer !== null || this.fragment() === this.written) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const frag = this.fragment();
      if (frag === this.written) return;
      this.written = frag;
      const base = window.location.href.split("#")[0];
      try {
        window.history.replaceState(window.history.state, "", frag ? `#${frag}` : base);
      } catch (err) {
        console.warn(`mudpuppy: cannot update the address: ${err.message}`);
      }
    }, WRITE_DELAY_MS);
  }

  // The parts of a state that need no runs: options (through their controls, as a click
  // would), chart toggles, the compare bar's parts, the selection.
  apply(st, initial) {
    const app = this.app;
    const set = (id, prop, value, event) => {
      const node = document.getElementById(id);
      if (!node || node[prop] === value) return;
      node[prop] = value;
      node.dispatchEvent(new Event(event));
    };
    set("smoothing", "value", String(st.smooth), "input");
    set("log-y", "checked", st.logy, "change");
    set("x-mode", "value", st.x, "change");
    for (const [chartId, v] of Object.entries(st.variants)) {
      const b = document.querySelector(`[data-chart="${chartId}"] button[data-variant="${v}"]`);
      if (b && app.variant.get(chartId) !== v) b.click();
    }
    this.parts.applyParts(st);
    if (st.sel) {
      app.selected = new Set(st.sel);
      app.selectionTouched = true;
    } else if (!initial) {
      app.selectionTouched = false;
      app.autoSelect(app.store.allSummaries());
    }
    if (st.run) app.selected.add(st.run);
    if (!initial) app.selectionChanged();
    app.mark("charts");
  }

  // The parts that name runs: the focus and the zoom (once the runs are known).
  applyRuns(st) {
    const app = this.app;
    const focus = st.run || st.focus;
    if (focus && app.store.summary(focus)) {
      if (st.run) app.selected.add(st.run);
      app.focus(focus, true);
    } else if (st.run) {
      app.linked = st.run; // not known yet: focused when it appears (app.followLink)
    }
    if (st.zoom) app.zoom(st.zoom[0], st.zoom[1]);
    else if (app.view) app.resetZoom();
  }

  // After the first snapshot: the link's focus and zoom; from then on the fragment is written.
  afterSnapshot() {
    if (this.ready) return;
    this.ready = true;
    const st = this.pending;
    this.pending = null;
    if (st) this.applyRuns(st);
  }
}
