"""Columnar storage of one run's series: numpy arrays with amortized growth, no per-point objects.

A `Table` holds the rows of one kind of record (train metrics, eval metrics). The step and time
columns belong to the table and are shared by all of its value columns; a value column holds only
its values plus, when it is sparse (absent in some rows), an int32 row index. A column present in
every row since its first is "dense" and needs no index at all: for the usual 4 scalars per row
that is 8 bytes per value plus 16 shared bytes per row (4 per point).
"""

from __future__ import annotations

import numpy as np

_GROWTH = 1.5  # capacity factor: 1.5 keeps the slack at <= 50 %, still amortized O(1)
_MIN_CAPACITY = 64


def _grow(arr: np.ndarray, used: int, need: int) -> np.ndarray:
    """`arr` with room for `need` items (its first `used` kept), reallocated only when needed."""
    if need <= len(arr):
        return arr
    cap = max(need, int(len(arr) * _GROWTH), _MIN_CAPACITY)
    out = np.empty(cap, dtype=arr.dtype)
    out[:used] = arr[:used]
    return out


class Column:
    """The values of one series in a table; `rows` is None while the column is dense."""

    __slots__ = ("values", "rows", "row0", "n")

    def __init__(self, row0: int) -> None:
        self.values = np.empty(0, dtype=np.float64)
        self.rows: np.ndarray | None = None
        self.row0 = row0
        self.n = 0

    def append(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Append values found at table rows `rows` (strictly increasing, beyond any held row)."""
        k = len(values)
        if k == 0:
            return
        n = self.n
        if self.rows is None:
            # rows are strictly increasing, so first and last tell whether they are contiguous
            start = self.row0 + n
            if not (int(rows[0]) == start and int(rows[-1]) == start + k - 1):
                self.rows = np.arange(self.row0, self.row0 + n, dtype=np.int32)
        if self.rows is not None:
            self.rows = _grow(self.rows, n, n + k)
            self.rows[n : n + k] = rows
        self.values = _grow(self.values, n, n + k)
        self.values[n : n + k] = values
        self.n = n + k

    def compact(self) -> None:
        self.values = self.values[: self.n].copy()
        if self.rows is not None:
            self.rows = self.rows[: self.n].copy()

    def row_index(self) -> np.ndarray | slice:
        if self.rows is None:
            return slice(self.row0, self.row0 + self.n)
        return self.rows[: self.n]


class Table:
    """Rows of (step, t) and named value columns; append-only."""

    def __init__(self) -> None:
        self.step = np.empty(0, dtype=np.int64)
        self.t = np.empty(0, dtype=np.float64)
        self.n = 0
        self.columns: dict[str, Column] = {}

    def append(
        self,
        steps: np.ndarray,
        ts: np.ndarray,
        columns: dict[str, tuple[np.ndarray, np.ndarray]],
    ) -> int:
        """Append rows; `columns` maps a name to (row numbers within this batch, values).

        Returns the table row number of the first appended row.
        """
        k = len(steps)
        base = self.n
        if k == 0:
            return base
        self.step = _grow(self.step, base, base + k)
        self.t = _grow(self.t, base, base + k)
        self.step[base : base + k] = steps
        self.t[base : base + k] = ts
        self.n = base + k
        for name, (rows, values) in columns.items():
            if len(values) == 0:
                continue
            col = self.columns.get(name)
            if col is None:
                col = self.columns[name] = Column(base + int(rows[0]))
            col.append(rows.astype(np.int32, copy=False) + base, values)
        return base

    def compact(self) -> None:
        """Drop the growth slack (after a large initial read; appends grow it again)."""
        self.step = self.step[: self.n].copy()
        self.t = self.t[: self.n].copy()
        for col in self.columns.values():
            col.compact()

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(step, t, value) of one column; views when the column is dense."""
        col = self.columns.get(name)
        if col is None:
            return None
        idx = col.row_index()
        return self.step[idx], self.t[idx], col.values[: col.n]

    def last(self, name: str) -> float | None:
        col = self.columns.get(name)
        if col is None or col.n == 0:
            return None
        return float(col.values[col.n - 1])

    def count(self, name: str) -> int:
        col = self.columns.get(name)
        return 0 if col is None else col.n


class LoraStore:
    """LoRA norm snapshots: per key ("A", "B", "update", ...) a snapshot x layer matrix.

    Cells a snapshot did not report are NaN (the callback reports every adapter every time, so
    NaN means "not reported" in practice).
    """

    def __init__(self) -> None:
        self.layers: dict[str, int] = {}
        self.steps = np.empty(0, dtype=np.int64)
        self.t = np.empty(0, dtype=np.float64)
        self.n = 0
        self.data: dict[str, np.ndarray] = {}  # key -> (capacity, n_layers) float64

    def append(self, step: int, t: float, layers: dict[str, dict[str, float]]) -> None:
        for name in layers:
            if name not in self.layers:
                self.layers[name] = len(self.layers)
        width = len(self.layers)
        n = self.n
        self.steps = _grow(self.steps, n, n + 1)
        self.t = _grow(self.t, n, n + 1)
        self.steps[n] = step
        self.t[n] = t
        cap = len(self.steps)
        for key, mat in list(self.data.items()):
            if mat.shape[0] < cap or mat.shape[1] < width:
                grown = np.full((cap, width), np.nan)
                grown[:n, : mat.shape[1]] = mat[:n]
                self.data[key] = grown
        for name, norms in layers.items():
            j = self.layers[name]
            for key, value in norms.items():
                got = self.data.get(key)
                if got is None:
                    got = self.data[key] = np.full((cap, width), np.nan)
                got[n, j] = value
        self.n = n + 1
