// Samples panel for the focused run: what the model generated during training. Pick a prompt,
// read its completion at every logged step (newest first), move a step slider, and see the
// word-level changes against another step. Texts come from the run and are data: they only
// ever reach the page as text nodes (textContent), never as markup.
//
// Protocol (docs/protocol.md): fetch /api/runs/{id}/samples, then apply `samples` messages by
// index; a gap or another generation means fetch again, as after a reconnect.

import { getJson, num, runPath } from "./api.js";
import { el } from "./dom.js";
import { fmtInt } from "./format.js";
import { diffWords } from "./wordiff.js";

const FETCH_LIMIT = 300; // events asked for when the panel opens a run
const MAX_EVENTS = 400; // events held; past this the older half is thinned
const LABEL_CHARS = 90; // prompt text shown in the picker

export class SamplesPanel {
  constructor(root, { schedule }) {
    this.root = root;
    this.schedule = schedule;
    this.picker = root.querySelector("#samples-prompt");
    this.note = root.querySelector("#samples-note");
    this.empty = root.querySelector("#samples-empty");
    this.body = root.querySelector("#samples-body");
    this.promptBox = root.querySelector("#samples-prompt-text");
    this.slider = root.querySelector("#samples-step");
    this.stepOut = root.querySelector("#samples-step-value");
    this.compare = root.querySelector("#samples-compare");
    this.view = root.querySelector("#samples-view");
    this.viewHead = root.querySelector("#samples-view-head");
    this.list = root.querySelector("#samples-list");
    this.runId = null;
    this.generation = null;
    this.next = 0; // index of the next event (the protocol's `count`)
    this.events = []; // oldest first: {i, step, t, took_s, n, items}
    this.fetching = false;
    this.queued = [];
    this.seq = 0;
    this.fetches = 0;
    this.failed = false;
    this.prompt = null; // the chosen prompt text (null: the first of the newest event)
    this.pick = null; // event index `i` shown in the view (null: the newest)
    this.against = "prev"; // "prev" | "none" | an event index, as a string
    this.shown = null; // what draw() last built (for stats)
    this.listKey = null; // what the built list, picker and step menu show (rebuilt on change only)
    this.pickerKey = null;
    this.compareKey = null;
    this.picker.addEventListener("change", () => {
      this.prompt = this.prompts()[Number(this.picker.value)] ?? null;
      this.pick = null;
      this.schedule();
    });
    this.slider.addEventListener("input", () => {
      const rows = this.rows();
      const row = rows[Number(this.slider.value)];
      this.pick = row ? row.i : null;
      this.schedule();
    });
    this.compare.addEventListener("change", () => {
      this.against = this.compare.value;
      this.schedule();
    });
  }

  // Open a run (or reopen it: `force` after a reconnect, or a reset). `summary`, when given, is
  // the run's summary: one that counts no samples is not asked for them (its `samples` messages
  // of that generation are applied as they come, as after a fetch that found none).
  async focus(runId, force = false, summary = null) {
    if (runId === this.runId && !force && (this.fetching || this.generation !== null)) return;
    if (runId !== this.runId) {
      this.prompt = null;
      this.pick = null;
      this.against = "prev";
    }
    this.runId = runId;
    this.events = [];
    this.generation = null;
    this.next = 0;
    this.queued = [];
    this.failed = false;
    const seq = ++this.seq;
    this.schedule();
    if (!runId || summary?.samples === 0) {
      this.fetching = false;
      if (runId) this.generation = summary.generation;
      return;
    }
    this.fetching = true;
    try {
      const got = await getJson(`api/runs/${runPath(runId)}/samples?limit=${FETCH_LIMIT}`);
      if (seq !== this.seq) return;
      this.events = got.events || [];
      this.generation = got.generation ?? null;
      this.next = got.count ?? this.events.length;
      this.fetches += 1;
    } catch (err) {
      if (seq !== this.seq) return;
      this.failed = true;
      console.warn(`mudpuppy: samples of ${runId}: ${err.message}`);
    } finally {
      if (seq === this.seq) {
        this.fetching = false;
        const q = this.queued;
        this.queued = [];
        for (const msg of q) this.onMessage(msg);
      }
    }
    this.schedule();
  }

  // A `samples` message (for any run: those of other runs are ignored).
  onMessage(msg) {
    if (msg.run !== this.runId || !this.runId) return;
    if (this.fetching) {
      this.queued.push(msg);
      return;
    }
    const i0 = msg.i0 ?? 0;
    if (msg.generation !== this.generation || i0 > this.next) {
      this.focus(this.runId, true); // a reset or a gap: what a fresh load shows
      return;
    }
    const fresh = (msg.events || []).filter((e) => e.i >= this.next);
    if (!fresh.length) return;
    this.events.push(...fresh);
    this.next = Math.max(this.next, msg.count ?? 0, fresh[fresh.length - 1].i + 1);
    if (this.events.length > MAX_EVENTS) {
      // every other event of the older half goes (the first and the newest stay)
      const half = this.events.length / 2;
      this.events = this.events.filter((e, j) => j >= half || j % 2 === 0);
    }
    this.schedule();
  }

  // A summary from the stream: a new generation of the open run is a reset.
  onSummary(s) {
    if (s.id === this.runId && this.generation !== null && s.generation !== this.generation) {
      this.focus(this.runId, true, s);
    }
  }

  // Distinct prompts, those of the newest event first (in its order), then older ones.
  prompts() {
    const seen = new Set();
    const out = [];
    for (let j = this.events.length - 1; j >= 0; j -= 1) {
      for (const item of this.events[j].items || []) {
        if (!seen.has(item.prompt)) {
          seen.add(item.prompt);
          out.push(item.prompt);
        }
      }
    }
    return out;
  }

  currentPrompt() {
    const all = this.prompts();
    return this.prompt !== null && all.includes(this.prompt) ? this.prompt : all[0] ?? null;
  }

  // The chosen prompt at every event that holds it, oldest first: {i, step, took_s, item}.
  rows() {
    const prompt = this.currentPrompt();
    const out = [];
    if (prompt === null) return out;
    for (const e of this.events) {
      const item = (e.items || []).find((it) => it.prompt === prompt);
      if (item) out.push({ i: e.i, step: e.step, took_s: num(e.took_s), item });
    }
    return out;
  }

  stats() {
    const rows = this.rows();
    return {
      run: this.runId,
      events: this.events.length,
      next: this.next,
      generation: this.generation,
      fetches: this.fetches,
      prompts: this.prompts(),
      prompt: this.currentPrompt(),
      steps: rows.map((r) => r.step),
      shown: this.shown,
    };
  }

  draw() {
    const rows = this.rows();
    const has = rows.length > 0;
    this.empty.classList.toggle("on", !has);
    this.body.classList.toggle("off", !has);
    if (!has) {
      this.empty.textContent = this.emptyText();
      this.note.textContent = "";
      this.shown = null;
      this.listKey = null;
      return;
    }
    const prompts = this.prompts();
    const prompt = this.currentPrompt();
    this.drawPicker(prompts, prompt);
    const thinned = this.events.filter((e) => e.items === null).length;
    const first = this.events[0].step;
    const last = this.events[this.events.length - 1].step;
    this.note.textContent =
      `${fmtInt(this.events.length)} events \u00b7 steps ${fmtInt(first)}\u2013${fmtInt(last)} \u00b7 ` +
      `${prompts.length} prompt${prompts.length === 1 ? "" : "s"}` +
      (thinned ? ` \u00b7 ${thinned} without text (thinned by the daemon)` : "");
    const current = rows.find((r) => r.i === this.pick) || rows[rows.length - 1];
    const at = rows.indexOf(current);
    this.slider.max = String(rows.length - 1);
    this.slider.value = String(at);
    this.slider.disabled = rows.length < 2;
    this.stepOut.textContent = `step ${fmtInt(current.step)}`;
    this.drawCompare(rows);
    setText(this.promptBox, current.item.prompt, cutOf(current.item, "prompt"));
    const base = this.baseFor(rows, at);
    this.drawView(current, base);
    this.drawList(rows, current, prompt);
    this.shown = {
      step: current.step,
      against: base ? base.step : null,
      completion: current.item.completion,
    };
  }

  emptyText() {
    if (!this.runId) return "focus a run to see what the model generates";
    if (this.fetching) return "loading samples\u2026";
    if (this.failed) return "could not load the samples of this run";
    if (this.events.length) return "no text held for this run's samples";
    return "no samples logged for this run (MonitorCallback(sample_prompts=...) writes them)";
  }

  // The step the view is compared with: the previous row, another chosen one, or none.
  baseFor(rows, at) {
    if (this.against === "none") return null;
    if (this.against === "prev") return at > 0 ? rows[at - 1] : null;
    const i = Number(this.against);
    return rows.find((r) => r.i === i && r !== rows[at]) || null;
  }

  drawPicker(prompts, prompt) {
    const key = JSON.stringify(prompts);
    if (key !== this.pickerKey) {
      this.pickerKey = key;
      this.picker.replaceChildren(...prompts.map((p, j) => new Option(label(p), String(j))));
    }
    this.picker.value = String(prompts.indexOf(prompt));
  }

  drawCompare(rows) {
    const known = this.against === "prev" || this.against === "none" || rows.some((r) => String(r.i) === this.against);
    if (!known) this.against = "prev"; // that step does not hold this prompt
    const key = `${rows.map((r) => r.i).join(",")}|${this.against}`;
    if (key !== this.compareKey) {
      this.compareKey = key;
      const opts = [new Option("previous step", "prev"), new Option("no diff", "none")];
      for (const r of [...rows].reverse()) opts.push(new Option(`step ${fmtInt(r.step)}`, String(r.i)));
      this.compare.replaceChildren(...opts);
    }
    this.compare.value = this.against;
    if (this.compare.value !== this.against) this.compare.value = "prev";
  }

  drawView(current, base) {
    const text = current.item.completion;
    const nodes = [];
    if (base) {
      for (const part of diffWords(base.item.completion, text)) {
        if (part.op === "eq") nodes.push(document.createTextNode(part.text));
        else {
          const span = el("span", part.op === "ins" ? "ins" : "del");
          span.textContent = part.text;
          nodes.push(span);
        }
      }
      this.viewHead.textContent = `step ${fmtInt(current.step)} against step ${fmtInt(base.step)}: ` +
        "added words highlighted, removed ones struck through";
    } else {
      nodes.push(document.createTextNode(text));
      this.viewHead.textContent = `step ${fmtInt(current.step)}`;
    }
    const cut = cutNode(cutOf(current.item, "completion"), text);
    if (cut) nodes.push(cut);
    this.view.replaceChildren(...nodes);
  }

  drawList(rows, current, prompt) {
    const key = `${prompt}\u0000${rows.map((r) => r.i).join(",")}`;
    if (key !== this.listKey) {
      this.listKey = key;
      const items = [];
      for (let j = rows.length - 1; j >= 0; j -= 1) {
        const r = rows[j];
        const li = el("li", "sample-row");
        li.dataset.i = String(r.i);
        const head = el("div", "sample-step");
        head.textContent = `step ${fmtInt(r.step)}` + (r.took_s !== null ? ` \u00b7 ${r.took_s.toFixed(2)} s` : "");
        const body = el("div", "sample-text");
        setText(body, r.item.completion, cutOf(r.item, "completion"));
        li.append(head, body);
        li.addEventListener("click", () => {
          this.pick = r.i;
          this.schedule();
        });
        items.push(li);
      }
      this.list.replaceChildren(...items);
    }
    for (const li of this.list.children) li.classList.toggle("on", li.dataset.i === String(current.i));
  }
}

function label(prompt) {
  const flat = prompt.replace(/\s+/g, " ").trim();
  return flat.length > LABEL_CHARS ? `${flat.slice(0, LABEL_CHARS - 1)}\u2026` : flat || "(blank)";
}

// The full size of a text when the writer cut it, else null.
function cutOf(item, field) {
  const n = item.truncated && item.truncated[field];
  return typeof n === "number" ? n : null;
}

function cutNode(full, text) {
  if (full === null) return null;
  const shown = new TextEncoder().encode(text).length;
  const mark = el("span", "cut");
  mark.textContent = ` \u2702 cut: ${fmtInt(shown)} of ${fmtInt(full)} bytes shown`;
  mark.title = "the writer caps each text at 8 KiB; this is a prefix of what the model said";
  return mark;
}

function setText(node, text, full) {
  const cut = cutNode(full, text);
  node.replaceChildren(document.createTextNode(text), ...(cut ? [cut] : []));
}
