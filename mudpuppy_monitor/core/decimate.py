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
    buckets = -(-n // size)
    pad = buckets * size - n
    nan = np.isnan(y)
    lo = np.where(nan, np.inf, y)
    hi = np.where(nan, -np.inf, y)
    if pad:
        # pad with the bucket's own last value: it never wins over a real point by index order
        lo = np.concatenate([lo, np.full(pad, np.inf)])
        hi = np.concatenate([hi, np.full(pad, -np.inf)])
    lo2 = lo.reshape(buckets, size)
    hi2 = hi.reshape(buckets, size)
    base = np.arange(buckets) * size
    imin = base + lo2.argmin(axis=1)
    imax = base + hi2.argmax(axis=1)
    cols = [imin, imax]
    if nan.any():
        nan_p = np.concatenate([nan, np.zeros(pad, dtype=bool)]) if pad else nan
        nan2 = nan_p.reshape(buckets, size)
        has = nan2.any(axis=1)
        cols.append(np.where(has, base + nan2.argmax(axis=1), imin))
    # a bucket's picks lie inside the bucket: sorted per bucket, they are sorted overall, and
    # equal neighbours are the only duplicates (cheaper than np.unique of them all)
    grid = np.stack(cols, axis=1)
    grid.sort(axis=1)
    idx = grid.ravel()
    keep = np.empty(len(idx), dtype=bool)
    keep[0] = True
    np.not_equal(idx[1:], idx[:-1], out=keep[1:])
    idx = idx[keep]
    return idx[idx < n]


def decimate(x: np.ndarray, y: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(x, y, decimated): raw when the range holds at most `points` points."""
    idx = minmax_indices(y, points)
    if idx is None:
        return x, y, False
    return x[idx], y[idx], True
