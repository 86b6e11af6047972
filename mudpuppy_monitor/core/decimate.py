"""Spike-preserving decimation: min and max per bucket, vectorized.

The points of the requested range are cut into equal-count buckets (in file order); each bucket
contributes its minimum, its maximum and its first non-finite value (a NaN loss is a result and
must stay visible), in their original order. A bucket of two or more points gives at most three,
so the answer holds at most 1.5 x `points` points (usually exactly `points`).
"""

from __future__ import annotations

import numpy as np


def select_range(x: np.ndarray, start: float | None, end: float | None) -> np.ndarray | slice:
    """Indices of the points with start <= x <= end (x need not be sorted; NaN x is never in)."""
    if start is None and end is None:
        return slice(None)
    mask = np.ones(len(x), dtype=bool) if start is None else x >= start
    if end is not None:
        mask &= x <= end
    return np.flatnonzero(mask)


def minmax_indices(y: np.ndarray, points: int) -> np.ndarray | None:
    """Indices into y of a min/max decimation to about `points` points; None when y is small."""
    n = len(y)
    if n <= points or points < 2:
        return None
    buckets = max(1, points // 2)
    size = -(-n // buckets)  # ceil
    full = n // size  # whole buckets; a last, shorter one holds the rest
    nan = np.isnan(y)
    has_nan = bool(nan.any())
    # NaN never wins a min or a max (it is picked on its own below); without one, no copies
    lo = np.where(nan, np.inf, y) if has_nan else y
    hi = np.where(nan, -np.inf, y) if has_nan else y
    cut = full * size
    base = np.arange(full) * size
    imin = base + lo[:cut].reshape(full, size).argmin(axis=1)
    imax = base + hi[:cut].reshape(full, size).argmax(axis=1)
    cols = [imin, imax]
    if has_nan:
        nan2 = nan[:cut].reshape(full, size)
        cols.append(np.where(nan2.any(axis=1), base + nan2.argmax(axis=1), imin))
    if cut < n:  # the last bucket, the same three picks
        last = [cut + int(lo[cut:].argmin()), cut + int(hi[cut:].argmax())]
        if has_nan:
            tail = nan[cut:]
            last.append(cut + int(tail.argmax()) if tail.any() else last[0])
        cols = [np.append(c, v) for c, v in zip(cols, last, strict=True)]
    # a bucket's picks lie inside the bucket: sorted per bucket, they are sorted overall, and
    # equal neighbours are the only duplicates (cheaper than np.unique of them all)
    grid = np.stack(cols, axis=1)
    grid.sort(axis=1)
    idx = grid.ravel()
    keep = np.empty(len(idx), dtype=bool)
    keep[0] = True
    np.not_equal(idx[1:], idx[:-1], out=keep[1:])
    return idx[keep]


def decimate(x: np.ndarray, y: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(x, y, decimated): raw when the range holds at most `points` points."""
    idx = minmax_indices(y, points)
    if idx is None:
        return x, y, False
    return x[idx], y[idx], True
