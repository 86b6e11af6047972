"""Layout of the terminal view: pure functions from a Snapshot to Rich renderables.

Nothing here reads files, samples GPUs or looks at a clock: the live loop (app.py) builds a
Snapshot and these functions draw it, so a test can render any state at any width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mudpuppy_monitor.core.configdiff import value_text
from mudpuppy_monitor.tui.formatting import (
    MISSING,
    NO_ETA,
    NONFINITE_CHAR,
    clean,
    format_age,
    format_bytes,
    format_eta,
    format_number,
    format_step,
    progress_bar,
    sparkline,
)
from mudpuppy_monitor.tui.logview import MAX_LOG_LINES, LogTail, log_section
from mudpuppy_monitor.tui.samples import SamplesPane, sample_lines

STATUS_STYLES: dict[str, str] = {
    "running": "green",
    "stalled": "yellow",
    "completed": "cyan",
    "failed": "bold red",
    "interrupted": "magenta",
    "crashed": "bold red",
    "unknown": "dim",
}
STATUS_ORDER = ("running", "stalled", "crashed", "failed", "interrupted", "completed", "unknown")
NAME_MAX = 32
NAME_MIN = 8
SPARK_WIDTH = 16
BAR_WIDTH = 10
OPTIONAL_COLUMNS = frozenset({"mfu", "jpt", "kwh"})
COLUMN_GAP = 2  # padding (0, 1) on both sides of each inner column edge, none at the table edge


@dataclass(frozen=True)
class Snapshot:
    """Everything one frame shows. `runs` are RunSummary-like objects, newest activity first."""

    root: str
    runs: Sequence[Any]
    now: float
    total_runs: int | None = None  # before the filter; None = same as len(runs)
    loss: Mapping[str, Sequence[float]] = field(default_factory=dict)  # run id -> recent values
    gpus: Sequence[Any] = ()  # GpuSample-like
    gpu_runs: Mapping[int, Sequence[str]] = field(default_factory=dict)  # gpu index -> run names
    gpu_others: Mapping[int, int] = field(default_factory=dict)  # gpu index -> other processes
    gpu_backend: str | None = None  # None: GPU sampling off
    gpu_simulated: bool = False
    gpu_reason: str | None = None
    filter: str | None = None
    # what happened lately (notify/news.py: `t`, `rule`, `text`), newest last
    news: Sequence[Any] = ()
    samples: SamplesPane | None = None  # the newest completion of each prompt of one run
    # `--diff`: the config keys that differ between the runs shown, and each run's flat config
    config_keys: Sequence[str] = ()
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    log: LogTail | None = None  # the output of the selected run


NEWS_STYLES: dict[str, str] = {
    "crashed": "bold red",
    "failed": "bold red",
    "nonfinite": "bold red",
    "stalled": "yellow",
    "spike": "yellow",
    "interrupted": "magenta",
    "completed": "cyan",
    "eval_improved": "green",
}


def _get(obj: Any, name: str) -> Any:
    return getattr(obj, name, None)


def sort_runs(runs: Sequence[Any]) -> list[Any]:
    """Most recently active first; runs that never logged go last, by name."""

    def key(run: Any) -> tuple[int, float, str]:
        t = _get(run, "last_event_t")
        if t is None or not math.isfinite(t):
            return (1, 0.0, str(_get(run, "name") or ""))
        return (0, -float(t), str(_get(run, "name") or ""))

    return sorted(runs, key=key)


def run_name(run: Any) -> str:
    return clean(_get(run, "name") or _get(run, "id"))


def status_text(status: str | None) -> Text:
    status = status or "unknown"
    return Text(status, style=STATUS_STYLES.get(status, "dim"))


def number_text(x: float | None, digits: int = 4) -> Text:
    s = format_number(x, digits)
    return Text(s, style="bold red" if s in ("NaN", "inf", "-inf") else "")


def spark_text(values: Sequence[float], width: int) -> Text:
    if not values:
        return Text(MISSING, style="dim")
    text = Text(sparkline(values, width), style="cyan")
    for i, ch in enumerate(text.plain):
        if ch == NONFINITE_CHAR:
            text.stylize("bold red", i, i + 1)
    return text


def age_of(run: Any, now: float) -> float | None:
    t = _get(run, "last_event_t")
    if t is not None and math.isfinite(t):
        return max(0.0, now - float(t))
    return _get(run, "last_event_age_s")


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    priority: int  # 0 = kept at any width; higher numbers are dropped first
    cell: Callable[[Any, Snapshot], Text]
    justify: str = "right"
    fixed_width: int | None = None


def _cells(spark_width: int = SPARK_WIDTH) -> list[Column]:
    # Listed in display order; `priority` is the order of importance used when space runs out.
    return [
        Column("status", "status", 0, lambda r, s: status_text(_get(r, "status")), "left"),
        Column("name", "run", 0, lambda r, s: Text(run_name(r)), "left"),
        Column("source", "source", 14, lambda r, s: Text(_short_source(_get(r, "source"))), "left"),
        Column(
            "step",
            "step",
            0,
            lambda r, s: Text(format_step(_get(r, "step"), _get(r, "max_steps"))),
        ),
        Column(
            "bar",
            "progress",
            11,
            lambda r, s: Text(
                progress_bar(_get(r, "step"), _get(r, "max_steps"), BAR_WIDTH), style="green"
            ),
            "left",
            BAR_WIDTH,
        ),
        Column("epoch", "epoch", 9, lambda r, s: Text(_format_epoch(_get(r, "epoch")))),
        Column("loss", "loss", 1, lambda r, s: number_text(_get(r, "loss"))),
        Column(
            "spark",
            "trend",
            5,
            lambda r, s: spark_text(s.loss.get(str(_get(r, "id")), ()), spark_width),
            "left",
            spark_width,
        ),
        Column("best", "best", 6, lambda r, s: number_text(_get(r, "best_loss"))),
        Column("eval", "eval loss", 8, lambda r, s: number_text(_get(r, "eval_loss"))),
        Column("lr", "lr", 7, lambda r, s: number_text(_get(r, "learning_rate"), 3)),
        Column("grad", "grad norm", 10, lambda r, s: number_text(_get(r, "grad_norm"), 3)),
        Column("speed", "steps/s", 4, lambda r, s: number_text(_get(r, "steps_per_s"), 3)),
        # efficiency (docs/efficiency.md): "-" when unknown; the API and dashboard say why
        Column("mfu", "MFU", 12, lambda r, s: Text(format_mfu(_get(r, "mfu")))),
        Column("jpt", "J/tok", 13, lambda r, s: number_text(_get(r, "joules_per_token"), 3)),
        Column("kwh", "kWh", 15, lambda r, s: number_text(_get(r, "energy_kwh"), 3)),
        Column("eta", "ETA", 2, lambda r, s: Text(_eta_cell(r))),
        Column("age", "updated", 3, lambda r, s: Text(format_age(age_of(r, s.now)))),
    ]


CONFIG_MAX = 20  # widest a config column gets
CONFIG_PRIORITY = 2  # asked for with --diff: kept before the age, steps/s and trend


def config_columns(keys: Sequence[str]) -> list[Column]:
    """One column per differing config key: the run's value, `-` when it has none."""

    def cell(key: str) -> Callable[[Any, Snapshot], Text]:
        def text(run: Any, snap: Snapshot) -> Text:
            values = snap.config.get(str(_get(run, "id")), {})
            if key not in values:
                return Text(MISSING, style="dim")
            return Text(clean(value_text(values[key], CONFIG_MAX)), style="magenta")

        return text

    return [Column(f"cfg:{k}", clean(k), CONFIG_PRIORITY, cell(k)) for k in keys]


def format_mfu(x: float | None) -> str:
    """MFU, a fraction, as a percentage with three significant digits: `41.2%`, `0.0118%`."""
    if x is None or isinstance(x, bool) or not math.isfinite(x):
        return MISSING
    return f"{x * 100:.3g}%"


def _eta_cell(run: Any) -> str:
    status = _get(run, "status")
    if status == "completed":
        return "done"
    if status in ("failed", "interrupted", "crashed"):
        return NO_ETA  # it will not finish on its own: no time left to count down
    return format_eta(_get(run, "eta_s"))


_SOURCES = {"native": "native", "hf-trainer-state": "hf", "llamafactory": "llamafactory"}


def _short_source(source: str | None) -> str:
    if not source:
        return MISSING
    return _SOURCES.get(source, source)


def _format_epoch(epoch: float | None) -> str:
    if epoch is None or not math.isfinite(epoch):
        return format_number(epoch)
    return f"{epoch:.2f}"


def choose_columns(
    widths: Mapping[str, int], columns: Sequence[Column], width: int
) -> tuple[list[Column], int]:
    """Columns that fit in `width` (importance order decides) and the width left for the name.

    Columns of priority 0 always stay; the name shrinks (down to NAME_MIN) before they overflow.
    """
    gap = COLUMN_GAP
    required = [c for c in columns if c.priority == 0]
    name_w = widths.get("name", NAME_MIN)
    used = sum(widths[c.key] for c in required) + gap * (len(required) - 1)
    if used > width and "name" in widths:
        name_w = max(NAME_MIN, name_w - (used - width))
        used = used - widths["name"] + name_w
    chosen = {c.key for c in required}
    for col in sorted((c for c in columns if c.priority > 0), key=lambda c: c.priority):
        extra = widths[col.key] + gap
        if used + extra <= width:
            chosen.add(col.key)
            used += extra
    return [c for c in columns if c.key in chosen], name_w


def runs_table(snap: Snapshot, width: int, max_rows: int | None = None) -> tuple[Table, int]:
    """The runs table fitted to `width`; returns it and the number of runs left out."""
    runs = list(snap.runs)
    shown = runs if max_rows is None else runs[: max(0, max_rows)]
    hidden = len(runs) - len(shown)
    # a short trend line still fits beside the essentials of an 80-column terminal
    columns = _cells(SPARK_WIDTH if width >= 120 else SPARK_WIDTH // 2)
    columns[2:2] = config_columns(snap.config_keys)  # right after the run's name
    cells = {c.key: [c.cell(r, snap) for r in shown] for c in columns}
    # an efficiency column shows only when some run has the value (no GPU, no tokens: no column)
    columns = [
        c
        for c in columns
        if c.key not in OPTIONAL_COLUMNS or any(t.plain != MISSING for t in cells[c.key])
    ]
    widths: dict[str, int] = {}
    for c in columns:
        w = max([len(c.header)] + [t.cell_len for t in cells[c.key]])
        if c.fixed_width is not None:
            w = max(len(c.header), c.fixed_width)
        if c.key == "name":
            w = min(w, NAME_MAX)
        elif c.key.startswith("cfg:"):
            w = min(w, CONFIG_MAX)
        widths[c.key] = w
    chosen, name_w = choose_columns(widths, columns, width)
    widths["name"] = name_w
    table = Table(
        box=None,
        padding=(0, 1),
        pad_edge=False,
        show_edge=False,
        header_style="bold",
        expand=False,
    )
    for c in chosen:
        table.add_column(
            c.header,
            justify=c.justify,  # type: ignore[arg-type]
            width=widths[c.key],
            no_wrap=True,
            overflow="ellipsis",
        )
    for i in range(len(shown)):
        table.add_row(*(cells[c.key][i] for c in chosen))
    return table, hidden


def header_text(snap: Snapshot, width: int | None = None) -> Text:
    """Counts, GPU backend, then the root: a long path is what gets cut on a narrow terminal.

    The program name goes first only when the whole line fits in `width`.
    """
    counts: dict[str, int] = {}
    for run in snap.runs:
        status = _get(run, "status") or "unknown"
        counts[status] = counts.get(status, 0) + 1
    text = Text()
    total = snap.total_runs if snap.total_runs is not None else len(snap.runs)
    noun = "run" if total == 1 else "runs"
    if snap.filter is not None:
        text.append(f"{len(snap.runs)} of {total} {noun} match /{clean(snap.filter)}/")
    else:
        text.append(f"{total} {noun}")
    parts = [s for s in STATUS_ORDER if counts.get(s)] + sorted(
        s for s in counts if s not in STATUS_ORDER
    )
    for i, status in enumerate(parts):
        text.append(": " if i == 0 else ", ")
        text.append(f"{counts[status]} {status}", style=STATUS_STYLES.get(status, ""))
    text.append("  GPU: ")
    if snap.gpu_backend is None:
        text.append("off", style="dim")
    else:
        text.append(snap.gpu_backend)
        if snap.gpu_simulated:
            text.append(" (simulated)", style="yellow")
    text.append(f"  {clean(snap.root)}")
    if snap.gpu_backend == "none" and snap.gpu_reason:
        text.append(f"  (no GPU: {snap.gpu_reason})", style="dim")
    name = "mudpuppy-monitor  "
    if width is None or len(name) + text.cell_len <= width:
        text = Text.assemble((name, "bold"), text)
    return text


def _pct(x: float | None) -> str:
    return MISSING if x is None else f"{x:.0f}%"


def gpu_line(sample: Any, run_names: Sequence[str], others: int = 0) -> Text:
    text = Text()
    text.append(f"GPU{_get(sample, 'index')} ", style="bold")
    text.append(f"{clean(_get(sample, 'name') or '?')}  ")
    text.append(f"util {_pct(_get(sample, 'util_pct')):>4}  ")
    used, total = _get(sample, "mem_used_bytes"), _get(sample, "mem_total_bytes")
    text.append(f"VRAM {format_bytes(used)}/{format_bytes(total)}  ")
    temp = _get(sample, "temperature_c")
    text.append(f"{MISSING if temp is None else f'{temp:.0f}°C'}  ")
    power, limit = _get(sample, "power_w"), _get(sample, "power_limit_w")
    if power is None:
        text.append(f"{MISSING} W")
    elif limit:
        text.append(f"{power:.0f}/{limit:.0f} W")
    else:
        text.append(f"{power:.0f} W")
    text.append("  runs: ")
    if run_names:
        text.append(", ".join(clean(n) for n in run_names), style="cyan")
    else:
        text.append(MISSING, style="dim")
    if others:
        # processes on the device that belong to no run: a shared box's other users
        text.append(f" +{others} other process{'es' if others > 1 else ''}", style="yellow")
    return text


def alerts(snap: Snapshot) -> list[Text]:
    """One line per thing that needs a look: the latest news, then non-finite values, stalls,
    crashes, failures."""
    out: list[Text] = []
    if snap.news:
        item = snap.news[-1]
        ago = format_age(snap.now - float(_get(item, "t")))
        style = NEWS_STYLES.get(str(_get(item, "rule")), "bold")
        out.append(Text(f"news   {clean(str(_get(item, 'text')))} ({ago} ago)", style=style))
    for run in snap.runs:
        name = run_name(run)
        status = _get(run, "status")
        nonfinite = _get(run, "nonfinite") or 0
        loss = _get(run, "loss")
        if nonfinite or (loss is not None and isinstance(loss, float) and math.isnan(loss)):
            count = nonfinite or 1
            out.append(Text(f"NaN    {name}: {count} non-finite train value(s)", style="bold red"))
        if status == "stalled":
            age = format_age(age_of(run, snap.now))
            out.append(Text(f"stall  {name}: no event for {age}", style="yellow"))
        elif status == "crashed":
            pid = _get(run, "pid")
            why = f"process {pid} is gone" if pid else "process is gone"
            out.append(Text(f"crash  {name}: {why}, no end event", style="bold red"))
        elif status == "failed":
            error = clean(_get(run, "error") or "no error message")
            out.append(Text(f"failed {name}: {error}", style="red"))
        bad = _get(run, "bad_lines") or 0
        if bad:
            out.append(Text(f"bad    {name}: {bad} unreadable line(s) skipped", style="dim"))
    return out


def render_snapshot(
    snap: Snapshot,
    width: int,
    max_rows: int | None = None,
    max_alerts: int | None = None,
    max_log: int = MAX_LOG_LINES,
) -> RenderableType:
    """The whole view: header, runs table, "+N more", GPU lines, the selected run's output,
    alerts footer."""
    parts: list[RenderableType] = [header_text(snap, width)]
    if snap.runs:
        table, hidden = runs_table(snap, width, max_rows)
        parts.append(table)
        if hidden:
            parts.append(Text(f"+{hidden} more (not shown)", style="dim"))
    else:
        empty = "no runs match the filter" if snap.filter is not None else "no runs found yet"
        parts.append(Text(empty, style="dim"))
    for sample in snap.gpus:
        index = _get(sample, "index")
        parts.append(gpu_line(sample, snap.gpu_runs.get(index, ()), snap.gpu_others.get(index, 0)))
    parts.extend(sample_lines(snap.samples, width))
    parts.extend(log_section(snap.log, max_log))
    notes = alerts(snap)
    if max_alerts is not None and len(notes) > max_alerts:
        hidden_notes = len(notes) - max(0, max_alerts)
        notes = notes[: max(0, max_alerts)]
        notes.append(Text(f"+{hidden_notes} more alert(s)", style="dim"))
    parts.extend(notes)
    for part in parts:
        if isinstance(part, Text):
            # one terminal line each: cut with an ellipsis rather than wrap and push rows away
            part.no_wrap = True
            part.overflow = "ellipsis"
    return Group(*parts)


def fit_height(snap: Snapshot, height: int) -> tuple[int | None, int | None]:
    """(max_rows, max_alerts) so that the whole view fits in `height` lines.

    Alerts get at most a quarter of the screen (the rest is summarised in one line); the runs
    table gets what is left, at least one row. None means "no limit needed".
    """
    n_alerts = len(alerts(snap))
    budget = max(1, height // 4)
    max_alerts = None if n_alerts <= budget else budget
    alert_lines = n_alerts if max_alerts is None else max_alerts + 1
    # header, table header, "+N more" line
    pane = len(sample_lines(snap.samples, 80))
    rows = height - (3 + len(snap.gpus) + pane + alert_lines)
    max_rows = None if rows + 1 >= len(snap.runs) else max(1, rows)
    return max_rows, max_alerts
