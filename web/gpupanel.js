// GPU panel: per device arc gauges (util, VRAM, temperature, power) with short history lines,
// the runs using the device, "SIMULATED" for the fake backend and the reason when there is none.

import { drawGauge } from "./gauge.js";
import { fmtBytes, fmtPct } from "./format.js";
import { drawSparkline } from "./sparkline.js";
import { el } from "./dom.js";
import { colors } from "./theme.js";

const HISTORY_MAX = 600; // samples kept per device (10 min at 1 Hz)

const METRICS = [
  {
    key: "util", label: "UTIL",
    frac: (d) => pct(d.util_pct), text: (d) => fmtPct(d.util_pct),
    warn: 0.7, crit: 0.9, color: "green",
  },
  {
    key: "mem", label: "VRAM",
    frac: (d) => pct(memPct(d)),
    text: (d) => (memPct(d) === null ? "\u2014" : fmtPct(memPct(d))),
    sub: (d) => (d.mem_total_bytes ? `${gib(d.mem_used_bytes)}/${gib(d.mem_total_bytes)} GiB` : ""),
    warn: 0.8, crit: 0.95, color: "cyan",
  },
  {
    key: "temp", label: "TEMP",
    frac: (d) => (d.temperature_c === null || d.temperature_c === undefined ? null : d.temperature_c / 100),
    text: (d) => (d.temperature_c === null || d.temperature_c === undefined ? "\u2014" : `${Math.round(d.temperature_c)}\u00b0C`),
    warn: 0.75, crit: 0.85, color: "amber",
  },
  {
    key: "power", label: "POWER",
    frac: (d) => (d.power_w !== null && d.power_limit_w ? d.power_w / d.power_limit_w : null),
    text: (d) => (d.power_w === null || d.power_w === undefined ? "\u2014" : `${Math.round(d.power_w)}W`),
    sub: (d) => (d.power_limit_w ? `of ${Math.round(d.power_limit_w)} W` : ""),
    warn: 0.8, crit: 0.95, color: "magenta",
  },
];

function gib(b) {
  return b === null || b === undefined ? "?" : (b / 2 ** 30).toFixed(1);
}

function pct(v) {
  return v === null || v === undefined ? null : v / 100;
}

// VRAM used as a percentage of the total, or null when either is unknown (null/0 would read 0 %).
export function memPct(d) {
  const used = d.mem_used_bytes;
  const total = d.mem_total_bytes;
  if (typeof used !== "number" || !Number.isFinite(used)) return null;
  if (typeof total !== "number" || !(total > 0)) return null;
  return (100 * used) / total;
}

// What each gauge of a device shows: [{key, frac (null = unknown), text, sub}].
export function gaugeReadings(d) {
  return METRICS.map((m) => ({ key: m.key, frac: m.frac(d), text: m.text(d), sub: m.sub ? m.sub(d) : "" }));
}

export class GpuPanel {
  constructor(root, { runName, runColor }) {
    this.root = root;
    this.body = root.querySelector("#gpu-body");
    this.badge = root.querySelector("#gpu-badge");
    this.runName = runName;
    this.runColor = runColor;
    this.info = { backend: null, simulated: false, reason: "" };
    this.devices = [];
    this.attribution = {};
    this.history = new Map(); // index -> {util: [], mem: [], temp: [], power: []}
    this.cards = new Map();
  }

  // /api/gpus answer (with history) or a snapshot's gpus (without).
  setAll(g) {
    this.info = { backend: g.backend, simulated: !!g.simulated, reason: g.reason || "" };
    this.devices = g.devices || [];
    this.attribution = g.attribution || {};
    if (g.history) {
      this.history.clear();
      for (const [idx, h] of Object.entries(g.history)) {
        const dev = this.devices.find((d) => String(d.index) === idx);
        const total = dev ? dev.mem_total_bytes : null;
        const mem = (h.mem_used_bytes || []).map((v) => memPct({ mem_used_bytes: v, mem_total_bytes: total }));
        this.history.set(String(idx), {
          util: (h.util_pct || []).slice(-HISTORY_MAX),
          mem: mem.slice(-HISTORY_MAX),
          temp: (h.temperature_c || []).slice(-HISTORY_MAX),
          power: (h.power_w || []).slice(-HISTORY_MAX),
        });
      }
    }
  }

  // A `gpus` message: one sample per device.
  addSample(msg) {
    this.devices = msg.devices || [];
    if (msg.attribution) this.attribution = msg.attribution;
    for (const d of this.devices) {
      const k = String(d.index);
      const h = this.history.get(k) || { util: [], mem: [], temp: [], power: [] };
      h.util.push(d.util_pct);
      h.mem.push(memPct(d));
      h.temp.push(d.temperature_c);
      h.power.push(d.power_w);
      for (const a of Object.values(h)) if (a.length > HISTORY_MAX) a.splice(0, a.length - HISTORY_MAX);
      this.history.set(k, h);
    }
  }

  stats() {
    return { devices: this.devices.length, simulated: this.info.simulated };
  }

  render() {
    const { simulated, backend, reason } = this.info;
    this.badge.textContent = simulated ? "SIMULATED" : backend && backend !== "none" ? backend.toUpperCase() : "";
    this.badge.className = simulated ? "badge sim" : "badge";
    if (this.devices.length === 0) {
      this.body.textContent = "";
      this.cards.clear();
      const p = el("p", "nogpu");
      p.textContent = `no GPU detected${reason ? `: ${reason}` : ""}`;
      this.body.append(p);
      return;
    }
    const seen = new Set();
    for (const d of this.devices) {
      const k = String(d.index);
      seen.add(k);
      const card = this.card(k);
      card.title.textContent = `GPU ${d.index} \u00b7 ${d.name || "unknown"}`;
      const h = this.history.get(k) || {};
      const readings = gaugeReadings(d);
      METRICS.forEach((m, i) => {
        const g = card.gauges[m.key];
        const r = readings[i];
        drawGauge(g.canvas, { frac: r.frac, text: r.text, label: m.label, warn: m.warn, crit: m.crit });
        g.sub.textContent = r.sub;
        drawSparkline(g.spark, (h[m.key] || []).map((v) => (v === null ? NaN : v)), colors()[m.color], {
          width: 78, height: 18, min: 0, max: m.key === "power" || m.key === "temp" ? undefined : 100,
        });
      });
      this.renderUsers(card.users, this.attribution[k]);
    }
    for (const [k, card] of this.cards) {
      if (!seen.has(k)) {
        card.el.remove();
        this.cards.delete(k);
      }
    }
    const stale = this.body.querySelector(".nogpu");
    if (stale) stale.remove();
  }

  renderUsers(box, att) {
    box.textContent = "";
    const runs = (att && att.runs) || [];
    const others = (att && att.others) || [];
    if (runs.length === 0 && others.length === 0) {
      box.textContent = "idle: no known process";
      return;
    }
    for (const id of runs) {
      const s = el("span", "gpu-run");
      s.textContent = this.runName(id);
      s.style.color = this.runColor(id);
      box.append(s);
    }
    for (const o of others) {
      const s = el("span", "gpu-other");
      s.textContent = `pid ${o.pid}${o.used_bytes ? ` ${fmtBytes(o.used_bytes)}` : ""}`;
      box.append(s);
    }
  }

  card(k) {
    let c = this.cards.get(k);
    if (c) return c;
    const card = el("div", "gpu-card");
    const title = el("div", "gpu-title");
    const row = el("div", "gauges");
    const gauges = {};
    for (const m of METRICS) {
      const cell = el("div", "gauge");
      const canvas = document.createElement("canvas");
      const sub = el("div", "gauge-sub");
      const spark = el("canvas", "gauge-spark");
      cell.append(canvas, sub, spark);
      row.append(cell);
      gauges[m.key] = { canvas, sub, spark };
    }
    const users = el("div", "gpu-users");
    card.append(title, row, users);
    this.body.append(card);
    c = { el: card, title, gauges, users };
    this.cards.set(k, c);
    return c;
  }
}
