// A word-level diff of two texts (no DOM): Myers' O(ND) algorithm over words and the whitespace
// between them, after the common start and end are set aside. Texts are at most 8 KiB each (the
// run format's cap); two texts that differ by more than MAX_EDITS words are shown as one
// deletion and one insertion rather than searched further (bounded time and memory).

export const MAX_EDITS = 1000;

// Words and whitespace runs, in order: joined they give the text back.
export function tokenize(text) {
  return text ? text.match(/\s+|\S+/g) || [] : [];
}

// [{op: "eq" | "del" | "ins", text}] turning `before` into `after`; neighbours of one op merged.
export function diffWords(before, after, maxEdits = MAX_EDITS) {
  const a = tokenize(before);
  const b = tokenize(after);
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre += 1;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf += 1;
  const midA = a.slice(pre, a.length - suf);
  const midB = b.slice(pre, b.length - suf);
  const ops = [];
  for (let i = 0; i < pre; i += 1) ops.push(["eq", a[i]]);
  const mid = myers(midA, midB, maxEdits);
  if (mid) ops.push(...mid);
  else {
    for (const t of midA) ops.push(["del", t]);
    for (const t of midB) ops.push(["ins", t]);
  }
  for (let i = a.length - suf; i < a.length; i += 1) ops.push(["eq", a[i]]);
  return merge(ops);
}

function merge(ops) {
  const out = [];
  for (const [op, text] of ops) {
    const last = out[out.length - 1];
    if (last && last.op === op) last.text += text;
    else out.push({ op, text });
  }
  return out;
}

// The edit script of token arrays a -> b as [op, token] pairs, or null past maxD edits.
function myers(a, b, maxD) {
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0) return [...a.map((t) => ["del", t]), ...b.map((t) => ["ins", t])];
  const limit = Math.min(n + m, maxD);
  const off = limit + 1;
  const v = new Int32Array(2 * limit + 3);
  const trace = []; // v before each round d, over k in [-d-1, d+1]: O(D^2) in all
  for (let d = 0; d <= limit; d += 1) {
    trace.push(v.slice(off - d - 1, off + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[off + k - 1] < v[off + k + 1]) ? v[off + k + 1] : v[off + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x += 1;
        y += 1;
      }
      v[off + k] = x;
      if (x >= n && y >= m) return backtrack(a, b, trace, d);
    }
  }
  return null;
}

function backtrack(a, b, trace, dEnd) {
  const ops = [];
  let x = a.length;
  let y = b.length;
  for (let d = dEnd; d >= 0; d -= 1) {
    const row = trace[d];
    const at = (k) => row[k + d + 1]; // row holds k = -d-1 .. d+1
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = d === 0 ? 0 : prevX - prevK;
    while (x > prevX && y > prevY) {
      ops.push(["eq", a[x - 1]]);
      x -= 1;
      y -= 1;
    }
    if (d > 0) {
      if (x === prevX) ops.push(["ins", b[y - 1]]);
      else ops.push(["del", a[x - 1]]);
    }
    x = prevX;
    y = prevY;
  }
  return ops.reverse();
}
