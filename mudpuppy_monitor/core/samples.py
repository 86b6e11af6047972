"""The generated samples of one run (`samples` events), in bounded memory.

Every event's metadata is kept (step, time, `took_s`, number of items: 28 bytes an event, in
compact arrays, like a series point). The texts are kept while the run's held texts stay under
`max_text_bytes` (4 MiB of UTF-8 by default): past that, the texts of every other event of the
older half of those held are released, so the held texts thin out towards the past (the first
event, what the untrained model said, and the newest are always held) instead of stopping at one
end. An event whose texts were released answers `items: null`. Texts are already capped at
8 KiB each by the format. The rules are written down in docs/core.md ("Samples").
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

MAX_TEXT_BYTES = 4 << 20  # texts held per run (UTF-8 bytes of prompts, completions, references)
MAX_INTERNED_PROMPTS = 256  # distinct prompt strings shared between events (the same prompt set)
TEXT_FIELDS = ("prompt", "completion", "reference")


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


class SampleStore:
    """The `samples` events of one run, in file order; event `i` is the i-th one read."""

    def __init__(self, max_text_bytes: int = MAX_TEXT_BYTES) -> None:
        self.max_text_bytes = max_text_bytes
        self.steps = array("q")
        self.ts = array("d")
        self.took = array("d")  # NaN: not recorded
        self.n_items = array("i")
        # event index -> (items, their text bytes); insertion order is index order
        self.held: dict[int, tuple[tuple[dict[str, Any], ...], int]] = {}
        self.text_bytes = 0
        self.released = 0  # events whose texts were released
        self._prompts: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.steps)

    def append(
        self, step: int, t: float, took_s: float | None, items: Iterable[Mapping[str, Any]]
    ) -> None:
        kept = tuple(self._item(item) for item in items)
        size = sum(_utf8_len(item[f]) for item in kept for f in TEXT_FIELDS if f in item)
        i = len(self.steps)
        self.steps.append(step)
        self.ts.append(t)
        known = took_s is not None and math.isfinite(took_s)
        self.took.append(float(took_s) if known else math.nan)  # type: ignore[arg-type]
        self.n_items.append(len(kept))
        self.held[i] = (kept, size)
        self.text_bytes += size
        self._thin()

    def _item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        # only the fields of the format: an item may carry others, of any size
        prompt = item["prompt"]
        shared = self._prompts.get(prompt)
        if shared is None and len(self._prompts) < MAX_INTERNED_PROMPTS:
            shared = self._prompts[prompt] = prompt
        out: dict[str, Any] = {"prompt": shared or prompt, "completion": item["completion"]}
        for key in ("reference", "score", "truncated"):
            if key in item:
                out[key] = item[key]
        return out

    def _thin(self) -> None:
        while self.text_bytes > self.max_text_bytes and len(self.held) > 1:
            keys = list(self.held)
            # every other one of the older half; the oldest held stays, and the newest
            drop = keys[: len(keys) // 2][1::2]
            if not drop:  # two or three held: the second oldest goes, then the oldest
                drop = [keys[1]] if len(keys) > 2 else [keys[0]]
            for i in drop:
                self.text_bytes -= self.held.pop(i)[1]
                self.released += 1

    # -- reading -------------------------------------------------------------------------

    def event(self, i: int) -> dict[str, Any]:
        """Event `i` as the protocol sends it (docs/protocol.md, "Samples")."""
        took = self.took[i]
        held = self.held.get(i)
        return {
            "i": i,
            "step": self.steps[i],
            "t": self.ts[i],
            "took_s": None if math.isnan(took) else took,
            "n": self.n_items[i],
            "items": None if held is None else [dict(item) for item in held[0]],
        }

    def since(self, n: int, limit: int | None) -> tuple[int, list[dict[str, Any]]]:
        """(i0, the events from index `n` on); with `limit`, only the last `limit` of them."""
        count = len(self.steps)
        i0 = max(0, n)
        if limit is not None and count - i0 > limit:
            i0 = count - max(0, limit)
        return i0, [self.event(i) for i in range(i0, count)]

    def select(
        self, start: float | None, end: float | None, limit: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """(how many events have a step in [start, end], the last `limit` of them in file
        order). Steps need not grow (a resumed run logs a step again): this is a filter."""
        # a copy: a view would pin the array's buffer, and the next append would fail
        steps = np.array(self.steps, dtype=np.int64)
        mask = np.ones(len(steps), dtype=bool)
        if start is not None:
            mask &= steps >= start
        if end is not None:
            mask &= steps <= end
        idx = np.flatnonzero(mask)
        total = len(idx)
        picked = idx[max(0, total - limit) :] if limit > 0 else idx[:0]
        return total, [self.event(int(i)) for i in picked]

    def held_count(self) -> int:
        return len(self.held)


def latest_per_prompt(events: Sequence[Mapping[str, Any]], max_prompts: int = 64) -> list[dict]:
    """The newest completion of every prompt in `events` (protocol events, oldest first): one
    item per prompt, with the `step` it was generated at; prompts in the order of the newest
    event that has each, as that event lists them."""
    out: dict[str, dict[str, Any]] = {}
    for event in reversed(events):
        items = event.get("items")
        if not items:
            continue
        for item in items:
            prompt = item.get("prompt")
            if isinstance(prompt, str) and prompt not in out and len(out) < max_prompts:
                out[prompt] = {**item, "step": event.get("step")}
    return list(out.values())
