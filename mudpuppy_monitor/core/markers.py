"""Markers: the moments a chart must show (non-finite values, loss spikes, checkpoints, restarts, end).

Spike rule: a training loss value is a spike when it exceeds the median of the 64 values before
it by more than max(6 x 1.4826 x MAD, 10 % of |median|). The MAD (median absolute deviation) is
robust: a run's own earlier spikes do not widen the band much, and the 10 % floor keeps a flat loss
(MAD ~ 0) from turning noise into spikes. While a large batch is read (attaching to a long run)
the reference window is taken once per 64 new values, so detection stays vectorized.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SPIKE_WINDOW = 64
SPIKE_K = 6.0
SPIKE_REL = 0.10
MAD_TO_SIGMA = 1.4826
# per run, nonfinite + spike markers: a series flapping NaN/finite must not grow the list without
# bound; end, restart and checkpoint markers are never capped
MAX_MARKERS = 10_000
CAPPED_KINDS = frozenset({"nonfinite", "spike"})


def marker(kind: str, step: int | None, t: float | None, series: str | None, detail: str) -> dict:
    return {"kind": kind, "step": step, "t": t, "series": series, "detail": detail}


def nonfinite_starts(values: np.ndarray, start: int) -> np.ndarray:
    """Indices >= start where a run of non-finite values begins (one marker per streak)."""
    new = values[start:]
    bad = ~np.isfinite(new)
    if not bad.any():
        return np.empty(0, dtype=np.int64)
    prev = np.empty_like(bad)
    prev[0] = start > 0 and not np.isfinite(values[start - 1])
    prev[1:] = bad[:-1]
    return np.flatnonzero(bad & ~prev) + start


def spike_indices(values: np.ndarray, start: int) -> np.ndarray:
    """Indices >= start of values that spike above their preceding window (see module doc)."""
    w = SPIKE_WINDOW
    first = max(start, w)
    n = len(values)
    if first >= n:
        return np.empty(0, dtype=np.int64)
    count = n - first
    if count <= 4:
        return _spikes_small(values, first)
    # one reference window per segment of `w` new values (a single one for small appends)
    seg = w if count > w else count
    starts = np.arange(first, n, seg)
    windows = sliding_window_view(values[: n - 1], w)[starts - w]
    med = np.median(windows, axis=1)
    mad = np.median(np.abs(windows - med[:, None]), axis=1)
    thr = med + np.maximum(SPIKE_K * MAD_TO_SIGMA * mad, SPIKE_REL * np.abs(med))
    seg_of = (np.arange(first, n) - first) // seg
    new = values[first:]
    with np.errstate(invalid="ignore"):
        hit = new > thr[seg_of]
    return np.flatnonzero(hit) + first


def _spikes_small(values: np.ndarray, first: int) -> np.ndarray:
    """The same rule for a few new values (live appends), without numpy's per-call overhead."""
    w = SPIKE_WINDOW
    ref = values[first - w : first].tolist()
    if any(x != x for x in ref):
        # a NaN in the window: no verdict (np.median gives NaN there too); sorting a list with
        # NaN would give an arbitrary order and a made-up median
        return np.empty(0, dtype=np.int64)
    ref.sort()
    med = (ref[w // 2 - 1] + ref[w // 2]) / 2
    dev = sorted(abs(x - med) for x in ref)
    mad = (dev[w // 2 - 1] + dev[w // 2]) / 2
    thr = med + max(SPIKE_K * MAD_TO_SIGMA * mad, SPIKE_REL * abs(med))
    if thr != thr:  # infinities in the window (inf - inf): no verdict either
        return np.empty(0, dtype=np.int64)
    hits = [i for i, x in enumerate(values[first:].tolist()) if x > thr]
    return np.array(hits, dtype=np.int64) + first
