// Links into the dashboard: `#run=<id>` (the id percent-encoded, as notifications write it) opens
// the page on that run.

export function runFromHash(hash) {
  const m = /^#?run=([^&]*)/.exec(hash || "");
  if (!m || !m[1]) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch (err) {
    return null; // a malformed escape: no run, rather than a wrong one
  }
}

export function hashFor(runId) {
  return `#run=${encodeURIComponent(runId)}`;
}
