"""The samples pane of the terminal view: the newest completion of each prompt of one run.

`LatestSamples` picks the run (the one asked for with `--samples`, else the most recently active
shown run that has samples) and reads its samples only when they changed; `sample_lines` lays a
pane out as one terminal line per prompt (pure, like render.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from mudpuppy_monitor.core.protocols import RunQueries
from mudpuppy_monitor.core.samples import latest_per_prompt
from mudpuppy_monitor.tui.formatting import MISSING, clean

MAX_PROMPTS = 8  # lines of the pane (the rest are counted)
PROMPT_WIDTH = 32  # the prompt's share of a line, at most
READ_EVENTS = 64  # the newest events looked at for the newest completion of each prompt
NEWLINE = "⏎"
CUT = " ✂"  # after a completion the writer cut at 8 KiB


@dataclass(frozen=True)
class SampleLine:
    prompt: str
    completion: str
    step: int | None
    cut: bool  # the writer cut the completion (it is a prefix of what the model said)


@dataclass(frozen=True)
class SamplesPane:
    run: str  # id
    name: str
    lines: tuple[SampleLine, ...] = ()
    prompts: int = 0  # distinct prompts found (more than `lines` when cut to MAX_PROMPTS)
    note: str | None = None  # why there is nothing to show


class LatestSamples:
    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id  # None: the most recently active shown run with samples
        self._key: tuple[str, int, int] | None = None
        self._lines: tuple[tuple[SampleLine, ...], int] = ((), 0)

    def pane(
        self, monitor: RunQueries, shown: Sequence[Any], every: Sequence[Any]
    ) -> SamplesPane | None:
        """The pane for this frame: `shown` are the runs in the table (most recently active
        first), `every` all runs (a run asked for by id may be filtered out of the table)."""
        candidates = [r for r in every if r.id == self.run_id] if self.run_id else shown
        for run in candidates:
            generation, count, _ = monitor.samples_since(run.id, 0, limit=0)
            if count > 0:
                return self._read(monitor, run, generation, count)
        if self.run_id is None:
            return None
        why = "no such run" if not candidates else "no samples logged"
        name = str(candidates[0].name) if candidates else self.run_id
        return SamplesPane(run=self.run_id, name=name, note=why)

    def _read(self, monitor: RunQueries, run: Any, generation: int, count: int) -> SamplesPane:
        key = (str(run.id), generation, count)
        if key != self._key:  # only when the run's samples changed
            got = monitor.samples(run.id, limit=READ_EVENTS)
            latest = latest_per_prompt(got["events"] if got else [])
            lines = tuple(
                SampleLine(
                    prompt=str(x["prompt"]),
                    completion=str(x["completion"]),
                    step=x.get("step"),
                    cut="completion" in (x.get("truncated") or {}),
                )
                for x in latest[:MAX_PROMPTS]
            )
            self._key, self._lines = key, (lines, len(latest))
        lines, prompts = self._lines
        return SamplesPane(run=str(run.id), name=str(run.name), lines=lines, prompts=prompts)


def one_line(text: str) -> str:
    """`text` on one terminal line: line breaks as ⏎, other controls and bidi characters as ?."""
    return clean(text.replace("\r\n", "\n").replace("\n", NEWLINE))


def sample_lines(pane: SamplesPane | None, width: int) -> list[Text]:
    """The pane as terminal lines: a title, then `step  prompt ▸ completion` per prompt."""
    if pane is None:
        return []
    title = Text("samples ", style="bold")
    title.append(clean(pane.name), style="cyan")
    if pane.note:
        title.append(f"  {pane.note}", style="dim")
        return [title]
    title.append("  newest completion of each prompt", style="dim")
    out = [title]
    step_w = max([len(_step(x.step)) for x in pane.lines] + [1])
    prompt_w = max(8, min(PROMPT_WIDTH, width // 3))
    for x in pane.lines:
        line = Text(f"  step {_step(x.step):>{step_w}}  ", style="dim")
        prompt = Text(one_line(x.prompt), style="dim")
        prompt.truncate(prompt_w, overflow="ellipsis")
        line.append_text(prompt)
        line.append(" ▸ ")
        room = max(4, width - line.cell_len - (len(CUT) if x.cut else 0))
        completion = Text(one_line(x.completion))
        if x.cut or completion.cell_len > room:
            completion.truncate(room, overflow="ellipsis")
        line.append_text(completion)
        if x.cut:
            line.append(CUT, style="yellow")
        out.append(line)
    if pane.prompts > len(pane.lines):
        out.append(Text(f"  +{pane.prompts - len(pane.lines)} more prompt(s)", style="dim"))
    return out


def _step(step: int | None) -> str:
    return MISSING if step is None else str(step)
