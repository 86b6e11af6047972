// Which runs the page overlays and focuses by itself, before the user picks: pure functions of
// the summaries (no DOM), so a page of 10,000 runs draws a bounded few.

import { num } from "./api.js";

// Until the user picks by hand, the overlay is this many of the most recently active runs
// among those the filter shows; a click on `all` overlays every shown run.
export const AUTO_OVERLAY = 20;

// Points asked per series of a run: fewer when many runs are overlaid (2,000 at 20 runs or
// fewer, 200 at 200 or more), so a load of many runs stays a few megabytes.
export function pointsPerRun(overlaid) {
  return Math.max(200, Math.min(2000, Math.round(40000 / Math.max(1, overlaid))));
}

// Most recently active first; the id breaks ties, so the pick is stable.
export function recentFirst(a, b) {
  const dt = (num(b.last_event_t) || 0) - (num(a.last_event_t) || 0);
  return dt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

// The ids overlaid by default: the AUTO_OVERLAY most recent of the summaries that match.
export function autoOverlay(summaries, matches) {
  const shown = summaries.filter(matches).sort(recentFirst);
  return new Set(shown.slice(0, AUTO_OVERLAY).map((s) => s.id));
}

// The run focused by default: the most recent running one, else the most recent.
export function autoFocus(summaries) {
  const running = summaries.filter((s) => s.status === "running").sort(recentFirst);
  return running[0] || [...summaries].sort(recentFirst)[0] || null;
}
