// Compare and share: the runs table, grouping, chart legends, the view in the URL, and the
// snapshot button, wired to the app through a few calls (app.js): `inputs()` for each chart's
// lines, `frame()` once per drawn frame, `afterSnapshot()` after each snapshot message.
// The app's own controls are driven through their DOM events, so a link restores them exactly
// as a click would.

import { el } from "./dom.js";
import { inert } from "./format.js";
import { Configs } from "./configs.js";
import { BANDS, Grouper, parseGroup } from "./grouping.js";
import { Legend } from "./legend.js";
import { RunsTable } from "./runstable.js";
import { chartInputs } from "./views.js";
import { UrlSync } from "./urlstate.js";

export class Compare {
  constructor(app) {
    this.app = app;
    this.configs = new Configs({
      onChange: () => {
        this.app.mark("compare");
        this.app.mark("charts");
      },
    });
    this.grouper = new Grouper();
    this.tableOpen = false;
    this.diffOnly = false;
    this.keySig = "";
    this.buildPanel(document.getElementById("compare-panel"));
    this.legends = new Map();
    for (const [id, chart] of app.charts) {
      this.legends.set(id, new Legend(chart, { onHover: (run) => this.highlight(run) }));
    }
    this.url = new UrlSync(app, this);
  }

  // The compare bar's share of the view in the URL (urlstate.js).
  viewParts() {
    const sort = this.table.sort;
    return {
      group: this.grouper.spec,
      band: this.grouper.band,
      filter: this.sidebarFilter(),
      table: this.tableOpen,
      sort: sort.col === "name" && sort.dir === 1 ? null : sort,
      diff: this.diffOnly,
    };
  }

  applyParts(st) {
    this.setFilter(st.filter);
    this.grouper.band = st.band;
    this.grouper.spec = st.group;
    this.diffOnly = st.diff;
    this.table.setSort(st.sort ? st.sort.col : "name", st.sort ? st.sort.dir : 1);
    this.setTable(st.table);
    this.syncControls();
  }

  afterSnapshot() {
    this.configs.refreshSoon(0);
    this.url.afterSnapshot();
    this.app.mark("compare");
  }

  // -- the panel --------------------------------------------------------------------------

  buildPanel(root) {
    const head = el("header");
    const title = el("h2");
    title.textContent = "COMPARE";
    this.tableBtn = button("TABLE", "mini", "show the runs table");
    this.tableBtn.id = "table-toggle";
    this.diffBox = checkbox("differs-only");
    const diffLabel = el("label", "ctl", this.diffBox, text(" differs only"));
    diffLabel.title = "show only the config keys whose value differs between the overlaid runs";
    this.filterBox = document.createElement("input");
    this.filterBox.type = "search";
    this.filterBox.id = "table-filter";
    this.filterBox.placeholder = "filter (regex)";
    this.filterBox.spellcheck = false;
    this.groupSel = document.createElement("select");
    this.groupSel.id = "group-by";
    this.groupRe = document.createElement("input");
    this.groupRe.id = "group-re";
    this.groupRe.placeholder = "(.*)-seed\\d+";
    this.groupRe.spellcheck = false;
    this.bandBtns = BANDS.map((b) => {
      const x = button(b === "std" ? "\u00b1std" : "min-max", "", `band: ${b === "std" ? "mean \u00b1 one standard deviation" : "lowest to highest member"}`);
      x.dataset.band = b;
      return x;
    });
    const bands = el("span", "toggle band-toggle", ...this.bandBtns);
    this.ungroupBtn = button("UNGROUP", "mini", "one line per run again");
    this.ungroupBtn.id = "ungroup";
    this.linkBtn = button("LINK", "mini", "copy a link to this view (selection, focus, grouping, zoom...)");
    this.linkBtn.id = "copy-link";
    this.linkOut = document.createElement("input");
    this.linkOut.id = "link-out";
    this.linkOut.readOnly = true;
    this.snapBtn = el("a", "mini snapshot-btn");
    this.snapBtn.id = "snapshot";
    this.snapBtn.textContent = "SNAPSHOT";
    this.snapBtn.title = "download the overlaid runs as one HTML file that opens anywhere, offline";
    this.snapBtn.setAttribute("download", "");
    head.append(
      title, this.tableBtn, diffLabel, this.filterBox,
      el("label", "ctl", text("GROUP "), this.groupSel), this.groupRe, bands, this.ungroupBtn,
      el("span", "grow"), this.linkBtn, this.linkOut, this.snapBtn,
    );
    this.tableBox = el("div", "runs-table off");
    this.tableBox.id = "runs-table";
    root.append(head, this.tableBox);
    this.table = new RunsTable(this.tableBox, {
      onToggle: (id, on) => this.app.toggle(id, on),
      onFocus: (id) => this.app.focus(id, true),
      onSort: () => this.app.mark("compare"),
    });

    this.tableBtn.addEventListener("click", () => this.setTable(!this.tableOpen));
    this.diffBox.addEventListener("change", () => {
      this.diffOnly = this.diffBox.checked;
      this.app.mark("compare");
    });
    // one filter: the sidebar's; this box edits it
    this.filterBox.addEventListener("input", () => this.setFilter(this.filterBox.value));
    this.groupSel.addEventListener("change", () => {
      const v = this.groupSel.value;
      if (v === "") this.setGroup(null);
      else if (v === "\u0000re") this.setGroup(parseGroup(`re:${this.groupRe.value || "(.*)-seed\\d+"}`));
      else this.setGroup({ by: "key", value: v });
    });
    this.groupRe.addEventListener("input", () => {
      const spec = parseGroup(`re:${this.groupRe.value}`);
      this.groupRe.classList.toggle("bad", this.groupRe.value !== "" && spec === null);
      if (spec || this.groupRe.value === "") this.setGroup(spec);
    });
    for (const b of this.bandBtns) b.addEventListener("click", () => this.setBand(b.dataset.band));
    this.ungroupBtn.addEventListener("click", () => this.setGroup(null));
    this.linkBtn.addEventListener("click", () => this.copyLink());
    this.syncControls();
  }

  setTable(open) {
    this.tableOpen = open;
    this.tableBox.classList.toggle("off", !open);
    this.tableBtn.classList.toggle("on", open);
    if (open) this.configs.refreshSoon(0);
    this.app.mark("compare");
  }

  setFilter(value) {
    const input = document.getElementById("run-filter");
    if (!input || input.value === value) return;
    input.value = value;
    input.dispatchEvent(new Event("input"));
  }

  setGroup(spec) {
    this.grouper.spec = spec;
    if (spec && spec.by === "key") this.configs.refreshSoon(0);
    this.syncControls();
    this.app.mark("charts");
    this.app.mark("compare");
  }

  setBand(band) {
    this.grouper.band = band === "std" ? "std" : "minmax";
    this.syncControls();
    this.app.mark("charts");
    this.app.mark("compare");
  }

  syncControls() {
    const spec = this.grouper.spec;
    const isRe = spec && spec.by === "re";
    this.groupRe.classList.toggle("off", !isRe);
    if (isRe && this.groupRe.value !== spec.value) this.groupRe.value = spec.value;
    this.fillGroupOptions(true);
    for (const b of this.bandBtns) b.classList.toggle("on", b.dataset.band === this.grouper.band);
    this.ungroupBtn.disabled = !spec;
    this.diffBox.checked = this.diffOnly;
  }

  // The group-by choices: the config keys of the overlaid runs, those that differ first.
  fillGroupOptions(force = false) {
    const ids = this.app.overlaid();
    const differ = this.configs.differing(ids);
    const rest = this.configs.keys(ids).filter((k) => !differ.includes(k));
    const spec = this.grouper.spec;
    const current = spec ? (spec.by === "re" ? "\u0000re" : spec.value) : "";
    const sig = `${differ.join(",")}|${rest.join(",")}|${current}`;
    if (!force && sig === this.keySig) return;
    this.keySig = sig;
    const sel = this.groupSel;
    sel.textContent = "";
    const opt = (value, label) => {
      const o = document.createElement("option");
      o.value = value;
      o.textContent = inert(label); // config keys come from the runs' files
      return o;
    };
    sel.append(opt("", "none"), opt("\u0000re", "run name regex\u2026"));
    const keys = [...differ, ...rest];
    if (spec && spec.by === "key" && !keys.includes(spec.value)) keys.unshift(spec.value);
    for (const k of keys) sel.append(opt(k, differ.includes(k) ? `${k} \u2260` : k));
    sel.value = current;
  }

  // -- chart inputs, highlight -------------------------------------------------------------

  // What a chart draws: the runs' lines (views.js), or the groups' mean lines and bands.
  inputs(cfg, variant, ctx) {
    const base = chartInputs(cfg, variant, ctx);
    let series = base.series;
    if (this.grouper.active()) {
      series = this.grouper.apply(series, {
        store: ctx.store,
        configOf: (id) => this.configs.of(id),
        focused: ctx.focused,
        view: this.app.view,
        smoothing: this.app.opts.smoothing,
        chartId: cfg.id,
      });
      if (this.grouper.spec.by === "key") this.configs.need(ctx.ids);
    }
    this.legends.get(cfg.id)?.set(series);
    return { series, markers: base.markers };
  }

  highlight(run) {
    for (const ch of this.app.charts.values()) ch.setHighlight(run);
  }

  // -- once per frame ----------------------------------------------------------------------

  frame(dirty) {
    if (dirty.sidebar || dirty.compare) {
      if (this.tableOpen) this.renderTable();
      this.fillGroupOptions();
      if (this.filterBox.value !== this.sidebarFilter() && document.activeElement !== this.filterBox) {
        this.filterBox.value = this.sidebarFilter();
      }
    }
    const href = this.snapshotHref(this.url.fragment());
    if (this.snapBtn.getAttribute("href") !== href) this.snapBtn.setAttribute("href", href);
    this.url.frame();
  }

  renderTable() {
    const app = this.app;
    const shown = app.store.allSummaries().filter((s) => app.sidebar.matches(s));
    const ids = shown.map((s) => s.id);
    this.configs.need(ids);
    const rows = shown.map((s) => ({ id: s.id, s, cfg: this.configs.of(s.id) }));
    const over = app.overlaid();
    const keys = this.diffOnly ? this.configs.differing(over.length >= 2 ? over : ids) : this.configs.keys(ids);
    this.table.update(rows, keys, app.selected, app.focused);
  }

  sidebarFilter() {
    return document.getElementById("run-filter")?.value || "";
  }

  // -- sharing -----------------------------------------------------------------------------

  snapshotHref(frag) {
    const q = new URLSearchParams();
    const ids = this.app.overlaid();
    if (ids.length) q.set("runs", ids.join(","));
    if (frag) q.set("view", frag);
    return `api/snapshot?${q}`;
  }

  async copyLink() {
    const url = this.url.link();
    this.linkOut.value = url;
    this.linkOut.classList.add("on");
    this.linkOut.select();
    try {
      await navigator.clipboard.writeText(url);
      this.linkBtn.textContent = "COPIED";
    } catch (err) {
      this.linkBtn.textContent = "LINK";  // no clipboard (plain http): the box holds it, selected
    }
    setTimeout(() => {
      this.linkBtn.textContent = "LINK";
    }, 1500);
  }

  stats() {
    return {
      ready: this.url.ready,
      fragment: this.url.fragment(),
      written: this.url.written,
      group: this.grouper.spec,
      band: this.grouper.band,
      groups: this.grouper.active() ? Object.fromEntries(this.grouper.groups) : {},
      tableOpen: this.tableOpen,
      diffOnly: this.diffOnly,
      table: this.table.stats(),
      legends: Object.fromEntries([...this.legends].map(([id, l]) => [id, l.stats()])),
      configFetches: this.configs.fetches,
      configRuns: this.configs.values.size,
    };
  }
}

function button(label, cls, title) {
  const b = el("button", cls);
  b.type = "button";
  b.textContent = label;
  if (title) b.title = title;
  return b;
}

function checkbox(id) {
  const c = document.createElement("input");
  c.type = "checkbox";
  c.id = id;
  return c;
}

function text(t) {
  return document.createTextNode(t);
}
