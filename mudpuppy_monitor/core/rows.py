"""Row accumulators: records gathered as Python lists during one read, turned into arrays once.

Decoding appends to plain lists (cheap per value); `to_arrays()` makes one numpy array per column
for `Table.append`, so the store never sees a per-point object.
"""

from __future__ import annotations

import numpy as np

EPOCH = "epoch"


class Rows:
    """Rows of one table being decoded: step, t, and per column (row numbers, values)."""

    __slots__ = ("steps", "ts", "cols")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.ts: list[float] = []
        self.cols: dict[str, tuple[list[int], list[float]]] = {}

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, t: float, values: dict[str, float]) -> None:
        r = len(self.steps)
        self.steps.append(step)
        self.ts.append(t)
        cols = self.cols
        for k, v in values.items():
            c = cols.get(k)
            if c is None:
                c = cols[k] = ([], [])
            c[0].append(r)
            c[1].append(v)

    def to_arrays(self) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
        steps = np.array(self.steps, dtype=np.int64)
        ts = np.array(self.ts, dtype=np.float64)
        cols = {
            k: (np.array(r, dtype=np.int32), np.array(v, dtype=np.float64))
            for k, (r, v) in self.cols.items()
        }
        return steps, ts, cols

    def split_off(self, prefix: str) -> Rows:
        """Move the columns whose name starts with `prefix` into a new Rows (with their rows)."""
        out = Rows()
        moving = [k for k in self.cols if k.startswith(prefix)]
        if not moving:
            return out
        taken = sorted({r for k in moving for r in self.cols[k][0]})
        where = {r: i for i, r in enumerate(taken)}
        out.steps = [self.steps[r] for r in taken]
        out.ts = [self.ts[r] for r in taken]
        for k in moving:
            rows, vals = self.cols.pop(k)
            out.cols[k] = ([where[r] for r in rows], vals)
        return out
