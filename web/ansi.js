// ANSI escape sequences in a job's output, turned into text pieces with colour classes.
//
// SGR colour codes (`ESC [ 31 m` ...) become classes ("ansi-fg-1", "ansi-bold"); every other
// escape (cursor moves, OSC titles and links, charset switches) is dropped. Nothing here makes
// HTML: the caller puts each piece's text in a span with textContent.

// CSI ... final byte; OSC ... BEL or ST; any other ESC + one byte; lone control characters
// other than tab are shown as nothing
const ESCAPE = /\x1b\[([0-?]*)[ -\/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|[\x00-\x08\x0b-\x1f\x7f]/g;

function sgr(state, params) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : Number(p)));
  for (let i = 0; i < codes.length; i += 1) {
    const c = codes[i];
    if (c === 0) {
      state.fg = null;
      state.bg = null;
      state.bold = false;
      state.dim = false;
      state.italic = false;
      state.underline = false;
    } else if (c === 1) state.bold = true;
    else if (c === 2) state.dim = true;
    else if (c === 3) state.italic = true;
    else if (c === 4) state.underline = true;
    else if (c === 22) {
      state.bold = false;
      state.dim = false;
    } else if (c === 23) state.italic = false;
    else if (c === 24) state.underline = false;
    else if (c >= 30 && c <= 37) state.fg = c - 30;
    else if (c >= 90 && c <= 97) state.fg = c - 90 + 8;
    else if (c === 39) state.fg = null;
    else if (c >= 40 && c <= 47) state.bg = c - 40;
    else if (c >= 100 && c <= 107) state.bg = c - 100 + 8;
    else if (c === 49) state.bg = null;
    else if (c === 38 || c === 48) {
      // 256-colour and true-colour forms: the first 16 of the 256 map to the classes, the rest
      // stay in the default colour
      const kind = codes[i + 1];
      let idx = null;
      if (kind === 5) {
        idx = codes[i + 2];
        i += 2;
      } else if (kind === 2) {
        i += 4;
      }
      const v = Number.isInteger(idx) && idx >= 0 && idx < 16 ? idx : null;
      if (c === 38) state.fg = v;
      else state.bg = v;
    }
  }
}

export function newAnsiState() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
}

function classes(state) {
  const out = [];
  if (state.fg !== null) out.push(`ansi-fg-${state.fg}`);
  if (state.bg !== null) out.push(`ansi-bg-${state.bg}`);
  if (state.bold) out.push("ansi-bold");
  if (state.dim) out.push("ansi-dim");
  if (state.italic) out.push("ansi-italic");
  if (state.underline) out.push("ansi-underline");
  return out.join(" ");
}

// [{text, cls}] for one line; `state` carries the colour over from the line before (programs
// often set a colour on one line and reset it lines later) and is updated.
export function ansiPieces(line, state = newAnsiState()) {
  const out = [];
  let last = 0;
  ESCAPE.lastIndex = 0;
  let m;
  while ((m = ESCAPE.exec(line)) !== null) {
    if (m.index > last) out.push({ text: line.slice(last, m.index), cls: classes(state) });
    if (m[2] === "m") sgr(state, m[1]);
    last = ESCAPE.lastIndex;
    if (m[0].length === 0) ESCAPE.lastIndex += 1; // never loop on an empty match
  }
  if (last < line.length) out.push({ text: line.slice(last), cls: classes(state) });
  return out;
}

// The text of a line without any escape sequence.
export function stripAnsi(line) {
  return ansiPieces(line).map((p) => p.text).join("");
}
