// Log panel for the focused run: the tail of its output.log (the job's stdout and stderr, as
// `mudpuppy-monitor run` recorded it), then the lines the daemon streams.
//
// The protocol is the points one with line numbers (docs/protocol.md, "log"): fetch the tail
// over HTTP while the stream for the run is open, hold back the `log` messages meanwhile, then
// append lines by `i0` (a gap or another generation: fetch again). Text is always text: every
// piece goes in with textContent, ANSI colour codes become classes, other escapes are dropped.
// The view follows the end unless the user scrolled up; it keeps at most MAX_LINES lines.

import { getJson, HttpError, runPath } from "./api.js";
import { ansiPieces, newAnsiState } from "./ansi.js";

const TAIL = 500; // lines fetched when a run is focused
const MAX_LINES = 2000; // lines kept in the page (the oldest are removed)
const FOLLOW_SLACK_PX = 8;

export class LogPanel {
  // root: the panel element (#log-panel); openLog(id|null): asks the server to stream that run's
  // log lines (or none)
  constructor(root, { openLog }) {
    this.root = root;
    this.body = root.querySelector("#log-body");
    this.note = root.querySelector("#log-note");
    this.openLog = openLog;
    this.runId = null;
    this.generation = null;
    this.end = null; // the number of the next line expected (null: nothing loaded)
    this.loading = false;
    this.queued = [];
    this.seq = 0;
    this.follow = true;
    this.fetches = 0;
    this.lines = 0; // lines in the page
    this.ansi = newAnsiState();
    this.body.addEventListener("scroll", () => {
      const b = this.body;
      this.follow = b.scrollTop + b.clientHeight >= b.scrollHeight - FOLLOW_SLACK_PX;
      this.root.classList.toggle("paused", !this.follow);
    });
  }

  focus(runId) {
    if (runId === this.runId) return;
    this.runId = runId;
    this.openLog(runId); // first: the stream then covers whatever follows the HTTP answer
    this.load();
  }

  // After a reconnect or a resync: what is shown must equal a fresh load.
  reload() {
    if (this.runId) this.load();
  }

  // A summary from the stream: another generation means the run was reset or rewritten.
  summary(s) {
    if (s.id === this.runId && this.end !== null && s.generation !== this.generation) this.load();
  }

  async load() {
    const seq = ++this.seq;
    const id = this.runId;
    this.loading = true;
    this.queued = [];
    this.clear();
    if (!id) {
      this.loading = false;
      this.setNote("");
      return;
    }
    try {
      const got = await getJson(`api/runs/${runPath(id)}/log?tail=${TAIL}`);
      if (seq !== this.seq) return;
      this.fetches += 1;
      this.generation = got.generation;
      this.end = got.start;
      this.append(got.lines || [], got.start);
      this.setNote(got.end === 0 ? "no output recorded (runs started with `mudpuppy-monitor run` have one)" : "");
    } catch (err) {
      if (seq !== this.seq) return;
      this.setNote(err instanceof HttpError && err.status === 404 ? "run not found" : `log not loaded: ${err.message}`);
    } finally {
      if (seq === this.seq) {
        this.loading = false;
        const q = this.queued;
        this.queued = [];
        for (const m of q) this.apply(m);
      }
    }
  }

  // A `log` message: {run, generation, i0, lines}.
  apply(m) {
    if (m.run !== this.runId) return;
    if (this.loading) {
      this.queued.push(m);
      return;
    }
    if (this.end === null || m.generation !== this.generation || m.i0 > this.end) {
      this.load(); // another generation, or a gap: what is shown cannot be continued
      return;
    }
    this.append(m.lines.slice(this.end - m.i0), this.end);
    if (this.note.textContent) this.setNote("");
  }

  append(lines, start) {
    if (!lines.length) return;
    const frag = document.createDocumentFragment();
    // a progress-bar snapshot (a line ending in \r) is shown only while nothing follows it
    const last = this.body.lastElementChild;
    if (last && last.classList.contains("snapshot")) {
      last.remove();
      this.lines -= 1;
    }
    lines.forEach((line, k) => {
      const snapshot = line.endsWith("\r");
      if (snapshot && k < lines.length - 1) return;
      frag.appendChild(this.lineElement(line, snapshot));
      this.lines += 1;
    });
    this.body.appendChild(frag);
    this.end = start + lines.length;
    while (this.lines > MAX_LINES && this.body.firstElementChild) {
      this.body.firstElementChild.remove();
      this.lines -= 1;
    }
    if (this.follow) this.body.scrollTop = this.body.scrollHeight;
  }

  lineElement(line, snapshot) {
    const div = document.createElement("div");
    div.className = snapshot ? "line snapshot" : "line";
    // a snapshot redraws its line: it starts from the colour its line started with
    const state = snapshot ? { ...this.ansi } : this.ansi;
    for (const piece of ansiPieces(line, state)) {
      if (!piece.cls) {
        div.appendChild(document.createTextNode(piece.text));
        continue;
      }
      const span = document.createElement("span");
      span.className = piece.cls;
      span.textContent = piece.text;
      div.appendChild(span);
    }
    return div;
  }

  clear() {
    this.body.replaceChildren();
    this.lines = 0;
    this.end = null;
    this.generation = null;
    this.ansi = newAnsiState();
    this.follow = true;
    this.root.classList.remove("paused");
  }

  setNote(text) {
    this.note.textContent = text;
  }

  // What tests read: the text shown, line by line.
  stats() {
    return {
      run: this.runId,
      end: this.end,
      generation: this.generation,
      fetches: this.fetches,
      follow: this.follow,
      lines: [...this.body.children].map((d) => d.textContent),
    };
  }
}
