"""build_snapshot: the page template filled with the runs' data, within a size budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mudpuppy_monitor import jsonutil
from mudpuppy_monitor.core.protocols import RunQueries
from mudpuppy_monitor.snapshot.data import DEFAULT_MAX_BYTES, collect
from mudpuppy_monitor.snapshot.page import PageTemplate


@dataclass(frozen=True)
class Snapshot:
    html: str
    runs: int  # runs embedded
    points_per_series: int  # the resolution the budget allowed
    lora_columns: int

    @property
    def size_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


def build_snapshot(
    runs: RunQueries,
    ids: Sequence[str],
    web_dir: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    view: str | None = None,
    now: float | None = None,
) -> Snapshot:
    """The page for the runs `ids` (unknown ids are left out). `view` is a dashboard link's
    state (the part after `#`) the page opens with when its own URL carries none."""
    page = PageTemplate(web_dir)
    doc = collect(runs, ids, fixed_bytes=page.fixed_bytes, max_bytes=max_bytes, view=view, now=now)
    html = page.fill(jsonutil.dumps(doc).decode("utf-8"))
    return Snapshot(html, len(doc["runs"]), doc["points_per_series"], doc["lora_columns"])
