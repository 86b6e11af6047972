// The chart's DOM overlay: crosshair line, drag-to-zoom selection box and tooltip. Moving the
// mouse only moves these elements; the canvas is never repainted for hover.
import { el } from "./dom.js";

const DRAG_MIN_PX = 5;

export class CrosshairOverlay {
  // geometry(): the last draw's {x0, x1, left, top, width, height} in CSS pixels
  constructor(plot, { geometry, onHover, onZoom, onReset, tooltip, xLabel }) {
    this.plot = plot;
    this.xLabel = xLabel;
    this.geometry = geometry;
    this.tooltip = tooltip;
    this.line = div("xhair");
    this.sel = div("selbox");
    this.tip = div("tip");
    plot.append(this.line, this.sel, this.tip);
    this.drag = null;

    const dataX = (ev) => {
      const g = geometry();
      if (!g) return null;
      const px = ev.clientX - plot.getBoundingClientRect().left - g.left;
      return { px, x: g.x0 + (px / g.width) * (g.x1 - g.x0), g };
    };
    plot.addEventListener("mousemove", (ev) => {
      const p = dataX(ev);
      if (!p) return;
      if (this.drag) {
        const a = Math.min(this.drag.px, p.px);
        const b = Math.max(this.drag.px, p.px);
        this.sel.style.left = `${p.g.left + Math.max(0, a)}px`;
        this.sel.style.width = `${Math.min(p.g.width, b) - Math.max(0, a)}px`;
        this.sel.style.top = `${p.g.top}px`;
        this.sel.style.height = `${p.g.height}px`;
        this.sel.classList.add("on");
      }
      onHover(p.x);
      this.showTip(p.x, ev);
    });
    plot.addEventListener("mouseleave", () => {
      onHover(null);
      this.tip.classList.remove("on");
    });
    plot.addEventListener("mousedown", (ev) => {
      if (ev.button !== 0) return;
      const p = dataX(ev);
      if (p) this.drag = { px: p.px, x: p.x };
      ev.preventDefault();
    });
    window.addEventListener("mouseup", (ev) => {
      if (!this.drag) return;
      const start = this.drag;
      this.drag = null;
      this.sel.classList.remove("on");
      const p = dataX(ev);
      if (!p || Math.abs(p.px - start.px) < DRAG_MIN_PX) return;
      onZoom(Math.min(start.x, p.x), Math.max(start.x, p.x));
    });
    plot.addEventListener("dblclick", () => onReset());
  }

  showLine(x) {
    const g = this.geometry();
    if (x === null || !g || x < g.x0 || x > g.x1) {
      this.line.classList.remove("on");
      return;
    }
    this.line.style.left = `${g.left + ((x - g.x0) / (g.x1 - g.x0)) * g.width}px`;
    this.line.style.top = `${g.top}px`;
    this.line.style.height = `${g.height}px`;
    this.line.classList.add("on");
  }

  showTip(x, ev) {
    const rows = this.tooltip(x);
    if (rows.length === 0) {
      this.tip.classList.remove("on");
      return;
    }
    this.tip.textContent = "";
    const head = div("tiphead");
    head.textContent = this.xLabel(x);
    this.tip.append(head);
    for (const r of rows.slice(0, 24)) {
      const row = div("tiprow");
      const sw = div("swatch");
      sw.style.background = r.color;
      const name = el("span", "tipname");
      name.textContent = r.label;
      const val = el("span", "tipval");
      val.textContent = r.value;
      row.append(sw, name, val);
      this.tip.append(row);
    }
    const box = this.plot.getBoundingClientRect();
    const px = ev.clientX - box.left;
    const py = ev.clientY - box.top;
    // keep the tooltip inside the plot, on the side away from the cursor
    const flip = px > box.width / 2;
    this.tip.style.left = flip ? "" : `${px + 14}px`;
    this.tip.style.right = flip ? `${box.width - px + 14}px` : "";
    this.tip.style.top = `${Math.max(4, Math.min(py, box.height - 40))}px`;
    this.tip.classList.add("on");
  }
}

function div(cls) {
  const d = document.createElement("div");
  d.className = cls;
  return d;
}
