"""Resumed runs: the points an attempt that died logged after the checkpoint the next attempt
resumed from are superseded (docs/run-format.md, "Resumed runs").

They leave the tables (so series, cursors, decimation and the summary see one curve, each step
once) for a `Superseded` store that only the export reads. Tables are rebuilt into new arrays,
never changed in place: a view a query or an export took before stays valid.
"""

from __future__ import annotations

import numpy as np

from mudpuppy_monitor.core.store import Column, LoraStore, Table

# (series, step, t, value) columns, as the export writes them
ExportColumns = list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]


class Superseded:
    """What the tables gave up, per series, in the order it was superseded."""

    def __init__(self) -> None:
        self.columns: ExportColumns = []
        self.points = 0

    def add(self, name: str, steps: np.ndarray, ts: np.ndarray, values: np.ndarray) -> None:
        if len(values):
            self.columns.append((name, steps, ts, values))
            self.points += len(values)


def split_table(table: Table, keep: np.ndarray, out: Superseded | None) -> Table:
    """A new Table with the rows where `keep` is true; the other values go to `out`."""
    n = table.n
    new = Table()
    steps, ts = table.step[:n], table.t[:n]
    new.step = steps[keep].copy()
    new.t = ts[keep].copy()
    new.n = len(new.step)
    position = np.cumsum(keep) - 1  # old row -> new row (where kept)
    for name, col in table.columns.items():
        rows = np.arange(col.row0, col.row0 + col.n) if col.rows is None else col.rows[: col.n]
        values = col.values[: col.n]
        kept = keep[rows]
        if out is not None and not kept.all():
            gone = rows[~kept]
            out.add(name, steps[gone], ts[gone], values[~kept])
        if kept.any():
            new_rows = position[rows[kept]].astype(np.int32)
            column = Column(int(new_rows[0]))
            column.append(new_rows, values[kept])
            new.columns[name] = column
    return new


def split_lora(store: LoraStore, keep: np.ndarray, out: Superseded | None) -> LoraStore:
    """A new LoraStore with the snapshots where `keep` is true; the others go to `out` as the
    export names them (`lora/<layer>/<key>`)."""
    n = store.n
    new = LoraStore()
    new.layers = dict(store.layers)
    new.steps = store.steps[:n][keep].copy()
    new.t = store.t[:n][keep].copy()
    new.n = len(new.steps)
    for key, mat in store.data.items():
        new.data[key] = mat[:n][keep].copy()
        if out is not None:
            gone_steps, gone_t = store.steps[:n][~keep], store.t[:n][~keep]
            for layer, j in store.layers.items():
                if j < mat.shape[1]:
                    col = mat[:n, j][~keep]
                    real = ~np.isnan(col)
                    out.add(f"lora/{layer}/{key}", gone_steps[real], gone_t[real], col[real])
    return new
