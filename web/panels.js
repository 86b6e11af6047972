// Stat bar, banners, alert toasts and the connection indicator: small DOM-only views.

import { runPath } from "./api.js";
import { el } from "./dom.js";
import { loadingText } from "./loading.js";
import {
  fmtClock, fmtDuration, fmtInt, fmtLr, fmtNum, fmtRate, fmtStepOf, inert,
} from "./format.js";

const STAT_FIELDS = [
  ["step", "STEP"], ["epoch", "EPOCH"], ["loss", "LOSS"], ["best", "BEST"], ["eval", "EVAL"],
  ["lr", "LR"], ["sps", "STEPS/S"], ["tps", "TOKENS/S"], ["eta", "ETA"], ["elapsed", "ELAPSED"],
];

export class StatBar {
  constructor(root) {
    this.root = root;
    this.title = root.querySelector("#focus-name");
    this.meta = root.querySelector("#focus-meta");
    this.bar = root.querySelector("#progress-fill");
    this.warn = root.querySelector("#focus-warn");
    this.exports = [...root.querySelectorAll("a.export")];
    this.cells = {};
    const grid = root.querySelector("#stats");
    for (const [key, label] of STAT_FIELDS) {
      const cell = el("div", "stat");
      const l = el("span", "label");
      l.textContent = label;
      const v = el("span", "value");
      v.dataset.stat = key;
      cell.append(l, v);
      grid.append(cell);
      this.cells[key] = v;
    }
  }

  // s: the focused run's summary (or null); receivedAt: performance.now() when it arrived,
  // so elapsed and ETA keep moving between messages while the run is live.
  render(s, receivedAt, color) {
    for (const a of this.exports) {
      const fmt = a.id.replace("export-", "");
      if (s && !s.loading) a.href = `api/runs/${runPath(s.id)}/export?format=${fmt}`;
      else a.removeAttribute("href");
      a.title = s ? `full-fidelity ${fmt} export of ${inert(s.id)}` : "";
    }
    const warn = [];
    if (s && s.nonfinite) warn.push(`${s.nonfinite} non-finite`);
    if (s && s.bad_lines) warn.push(`${s.bad_lines} bad lines skipped`);
    this.warn.textContent = warn.join(" \u00b7 ");
    if (!s) {
      this.title.textContent = "no run selected";
      this.title.title = "";
      this.meta.textContent = "";
      this.bar.style.width = "0%";
      for (const v of Object.values(this.cells)) v.textContent = "\u2014";
      return;
    }
    const live = s.status === "running";
    const ago = live ? (performance.now() - receivedAt) / 1000 : 0;
    this.title.textContent = inert(s.name || s.id);
    this.title.title = inert(s.id);
    this.title.style.color = color;
    this.meta.textContent = inert(`${loadingText(s) || s.status} \u00b7 ${s.source}${s.host ? ` \u00b7 ${s.host}` : ""}${s.pid ? ` \u00b7 pid ${s.pid}` : ""}`);
    const frac = s.max_steps ? Math.min(1, (s.step || 0) / s.max_steps) : 0;
    this.bar.style.width = `${(frac * 100).toFixed(1)}%`;
    const c = this.cells;
    c.step.textContent = fmtStepOf(s.step, s.max_steps);
    c.epoch.textContent =
      s.epoch === null || s.epoch === undefined
        ? "\u2014"
        : `${fmtNum(s.epoch, 3)}${s.num_train_epochs ? ` / ${fmtNum(s.num_train_epochs, 3)}` : ""}`;
    c.loss.textContent = fmtNum(s.loss);
    c.loss.classList.toggle("bad", typeof s.loss === "number" && !Number.isFinite(s.loss));
    c.best.textContent = fmtNum(s.best_loss);
    c.eval.textContent = fmtNum(s.eval_loss);
    c.lr.textContent = fmtLr(s.learning_rate);
    c.sps.textContent = fmtRate(s.steps_per_s, "");
    c.tps.textContent = fmtRate(s.tokens_per_s, "");
    c.eta.textContent = live && s.eta_s !== null ? fmtDuration(Math.max(0, s.eta_s - ago)) : s.status === "completed" ? "done" : fmtDuration(s.eta_s);
    c.elapsed.textContent = fmtDuration(s.elapsed_s === null ? null : s.elapsed_s + ago);
  }
}

// The banner for the focused run's final or troubled state.
export function bannerFor(s) {
  if (!s) return null;
  const step = fmtInt(s.step);
  switch (s.status) {
    case "completed":
      return {
        kind: "completed",
        text: `COMPLETED \u00b7 ${fmtClock(s.last_event_t, true)} \u00b7 ${step} steps \u00b7 best loss ${fmtNum(s.best_loss)}${s.elapsed_s ? ` \u00b7 took ${fmtDuration(s.elapsed_s)}` : ""}`,
      };
    case "crashed":
      return {
        kind: "crashed",
        text: `CRASHED \u00b7 the training process${s.pid ? ` (pid ${s.pid})` : ""} is gone without an end event \u00b7 last step ${step} at ${fmtClock(s.last_event_t)}`,
      };
    case "failed":
      return { kind: "crashed", text: `FAILED at step ${step}${s.error ? ` \u00b7 ${s.error}` : ""}` };
    case "stalled":
      return {
        kind: "stalled",
        text: `STALLED \u00b7 no event for ${fmtDuration(s.last_event_age_s)} \u00b7 step ${step}`,
      };
    case "interrupted":
      return { kind: "stalled", text: `INTERRUPTED at step ${step}` };
    default:
      return null;
  }
}

export function renderBanner(node, s) {
  const b = bannerFor(s);
  node.textContent = b ? inert(b.text) : ""; // the error of a failed run comes from its files
  node.className = b ? `banner on ${b.kind}` : "banner";
  node.dataset.kind = b ? b.kind : "";
}

export class Toasts {
  constructor(root) {
    this.root = root;
  }

  show(text, kind) {
    const t = el("div", `toast ${kind}`);
    t.textContent = inert(text); // run names and alert messages come from the root
    this.root.prepend(t);
    while (this.root.children.length > 5) this.root.lastChild.remove();
    setTimeout(() => t.remove(), 8000);
  }
}

export function renderConnection(node, state, retryInS) {
  const label = {
    connecting: "CONNECTING",
    live: "LIVE",
    reconnecting: `RECONNECTING IN ${retryInS}s`,
    disconnected: `DISCONNECTED \u00b7 retry in ${retryInS}s`,
    idle: "OFFLINE",
  }[state];
  node.querySelector(".conn-text").textContent = label || state;
  node.dataset.state = state;
  node.className = `conn ${state}`;
}
