// The colours the canvases draw with. The palette lives in style.css (the :root custom
// properties --bg, --panel, --grid, --green, --cyan, --amber, --magenta, --red, --text, --dim):
// it is read from the stylesheet once, on first use, and shared by every module. Run colours
// are a fixed list of neon colours picked by a hash of the run id, so a run keeps its colour
// across reloads, machines and filters.

const NAMES = ["bg", "panel", "grid", "green", "cyan", "amber", "magenta", "red", "text", "dim"];
let palette = null;

// {bg, panel, grid, green, cyan, amber, magenta, red, text, dim}: CSS colour strings.
export function colors() {
  if (palette) return palette;
  const style = getComputedStyle(document.documentElement);
  const read = Object.fromEntries(NAMES.map((n) => [n, style.getPropertyValue(`--${n}`).trim()]));
  // the stylesheet not applied yet: use what there is, ask again next time
  if (NAMES.every((n) => read[n])) palette = Object.freeze(read);
  return read;
}

const RUN_COLORS = [
  "#39ff14", "#00ffff", "#ffd700", "#ff00ff", "#ff8c00", "#ff9e7a", "#bf7fff", "#00ff9f",
  "#ff6ec7", "#c0ff00", "#4d9fff", "#b0c4ff",
];

// Stable neon colour per run: FNV-1a hash of the id into RUN_COLORS.
export function runColor(id) {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i += 1) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return RUN_COLORS[h % RUN_COLORS.length];
}
