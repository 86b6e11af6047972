"""The live loop of the terminal view: refresh the core, read the GPU sampler, draw a frame.

Everything runs in the calling thread except the GPU sampler's own worker: `Monitor.refresh()`
is synchronous and cheap when nothing changed, so a timer loop is all the view needs. Time comes
in as `get_time` (wall clock for ages, passed on to the Monitor) and `sleep`, so tests drive the
loop frame by frame.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live

from mudpuppy_monitor.core.protocols import RefreshableRuns, RunQueries
from mudpuppy_monitor.core.summary import RunSummary
from mudpuppy_monitor.gpu.base import GpuBackend, SampleSource
from mudpuppy_monitor.gpu.records import Attribution, GpuSample
from mudpuppy_monitor.notify.news import News, NewsItem
from mudpuppy_monitor.tui.logview import MAX_LOG_LINES, LogTail, log_height
from mudpuppy_monitor.tui.render import (
    SPARK_WIDTH,
    Snapshot,
    fit_height,
    render_snapshot,
    sort_runs,
)
from mudpuppy_monitor.tui.samples import LatestSamples

if TYPE_CHECKING:
    from mudpuppy_monitor.core import Monitor
    from mudpuppy_monitor.efficiency import EfficiencyTracker

LOSS = "loss"
# gpu.attribute: which runs (and how many other processes) are on each device
Attribute = Callable[[Sequence[GpuSample], Sequence[RunSummary]], Mapping[int, Attribution]]


class LossTails:
    """The last few loss values of each run, kept up to date incrementally.

    Uses `Monitor.points_since` with a cursor per run, so each frame reads only the new points;
    a new generation (file truncated or replaced, run recreated) starts the tail over.
    """

    def __init__(self, keep: int = SPARK_WIDTH) -> None:
        self.keep = keep
        self._tails: dict[str, deque[float]] = {}
        self._cursor: dict[str, int] = {}
        self._generation: dict[str, int] = {}

    def update(self, monitor: RunQueries, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            generation, grown = self._read(monitor, run_id, self._cursor.get(run_id, 0))
            if self._generation.get(run_id, generation) != generation:
                # cursors of an older generation point into data that is gone: read it all again
                self._cursor.pop(run_id, None)
                self._tails.pop(run_id, None)
                generation, grown = self._read(monitor, run_id, 0)
            self._generation[run_id] = generation
            part = grown.get(LOSS)
            if not part:
                continue
            tail = self._tails.setdefault(run_id, deque(maxlen=self.keep))
            tail.extend(float(y) for y in part["y"][-self.keep :])
            self._cursor[run_id] = int(part["i0"]) + len(part["y"])

    def _read(self, monitor: RunQueries, run_id: str, cursor: int) -> tuple[int, dict[str, Any]]:
        # only the loss, and only its last `keep` points: a run attached with 100k steps costs
        # the same first frame as a fresh one
        return monitor.points_since(run_id, {LOSS: cursor}, names=[LOSS], limit=self.keep)

    def forget(self, keep_ids: set[str]) -> None:
        for table in (self._tails, self._cursor, self._generation):
            for run_id in [r for r in table if r not in keep_ids]:
                del table[run_id]

    def get(self, run_id: str) -> list[float]:
        return list(self._tails.get(run_id, ()))


class TuiView:
    """Owns the per-frame state of the view (loss tails, the filter) over a Monitor."""

    def __init__(
        self,
        monitor: RefreshableRuns,
        root_label: str,
        *,
        sampler: SampleSource | None = None,
        backend: GpuBackend | None = None,
        pattern: re.Pattern[str] | None = None,
        get_time: Callable[[], float] = time.time,
        attribute: Attribute | None = None,
        news: News | None = None,
        bell: bool = False,
        samples_run: str | None = None,
        diff: bool = False,
        log_run: str | None = None,
    ) -> None:
        self.monitor = monitor
        self.diff = diff  # show the config keys that differ between the runs shown
        # the run whose output is shown; None: the most recently active run that has output
        self.log_run = log_run
        self.root_label = root_label
        self.sampler = sampler
        self.backend = backend
        self.pattern = pattern
        self.get_time = get_time
        self.attribute = attribute
        self.tails = LossTails()
        self.samples = LatestSamples(samples_run)
        self._seen: set[str] = set()
        self.news = news  # None: no news line, no bell (`--once`)
        self.bell = bell  # ring the terminal bell on a frame with news
        self.fresh: list[NewsItem] = []  # the news of the last frame, for the runs shown

    def _matches(self, run: RunSummary) -> bool:
        if self.pattern is None:
            return True
        return bool(self.pattern.search(str(run.name)) or self.pattern.search(str(run.id)))

    def snapshot(self) -> Snapshot:
        changed = self.monitor.refresh()
        summaries = list(self.monitor.summaries())
        runs = sort_runs([r for r in summaries if self._matches(r)])
        ids = {str(r.id) for r in runs}
        # read tails only for runs that changed or are new to the view
        self.tails.update(self.monitor, [i for i in ids if i in changed or i not in self._seen])
        self.tails.forget(ids)
        self._seen = ids
        news: list[NewsItem] = []
        if self.news is not None:
            fresh = self.news.update(changed, [str(r.id) for r in summaries])
            self.fresh = [n for n in fresh if n.run in ids]
            news = [n for n in self.news.recent if n.run in ids]
        samples = list(self.sampler.latest()) if self.sampler is not None else []
        gpu_runs: dict[int, list[str]] = {}
        gpu_others: dict[int, int] = {}
        if samples and self.attribute is not None:
            names = {str(r.id): str(r.name) for r in summaries}
            for index, att in self.attribute(samples, summaries).items():
                gpu_runs[int(index)] = [names.get(r, r) for r in att.run_ids]
                gpu_others[int(index)] = len(att.others)
        backend = self.backend
        configs: dict[str, Any] = {"keys": [], "values": {}}
        if self.diff:
            configs = self.monitor.config_diff([str(r.id) for r in runs])
        return Snapshot(
            root=self.root_label,
            runs=runs,
            now=self.get_time(),
            total_runs=len(summaries),
            loss={i: self.tails.get(i) for i in ids},
            gpus=samples,
            gpu_runs=gpu_runs,
            gpu_others=gpu_others,
            # `kind` is the short stable word ("fake"); `name` may be a longer sentence
            gpu_backend=None if backend is None else backend.kind,
            gpu_simulated=backend is not None and backend.simulated,
            gpu_reason=None if backend is None else backend.reason,
            filter=None if self.pattern is None else self.pattern.pattern,
            news=news,
            samples=self.samples.pane(self.monitor, runs, summaries),
            config_keys=configs["keys"],
            config=configs["values"],
            log=self._log(runs),
        )

    def _log(self, runs: Sequence[RunSummary]) -> LogTail | None:
        names = {str(r.id): str(r.name) for r in runs}
        wanted = [self.log_run] if self.log_run is not None else list(names)[:20]
        for run_id in wanted:
            # a few lines more than shown: snapshots followed by a line are left out
            got = self.monitor.log_tail(run_id, MAX_LOG_LINES + 8)
            if got is not None and (got["end"] or run_id == self.log_run):
                return LogTail(run_id, names.get(run_id, run_id), got["lines"])
        if self.log_run is not None:  # not found yet (a job that has not started its run)
            return LogTail(self.log_run, self.log_run, ())
        return None


class Frame:
    """One snapshot, laid out for whatever size the console has when it is drawn."""

    def __init__(self, snap: Snapshot, fit_height: bool) -> None:
        self.snap = snap
        self.fit_height = fit_height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        max_rows = max_alerts = None
        max_log = MAX_LOG_LINES
        if self.fit_height:
            height = options.height or console.size.height
            max_log = log_height(self.snap.log, height)
            used = 0 if self.snap.log is None else max_log + 1  # and the title line
            max_rows, max_alerts = fit_height(self.snap, max(1, height - used))
        yield render_snapshot(self.snap, options.max_width, max_rows, max_alerts, max_log)


def run_once(view: TuiView, console: Console) -> int:
    console.print(Frame(view.snapshot(), fit_height=False))
    return 0


def run_live(
    view: TuiView,
    console: Console,
    refresh_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    max_frames: int | None = None,
    screen: bool = True,
    stop: threading.Event | None = None,
) -> int:
    """Redraw every `refresh_s` until Ctrl-C or SIGTERM (or `max_frames`, or `stop` is set: one
    more frame is drawn then, with what is true at that moment); the terminal is restored on
    exit."""
    frames = 0
    stopping = False
    restore_sigterm = _stop_on_sigterm()
    try:
        with Live(
            console=console,
            screen=screen,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:
            while True:
                started = time.monotonic()
                live.update(Frame(view.snapshot(), fit_height=True), refresh=True)
                if view.bell and view.fresh:
                    console.bell()  # once per frame, however much news it has
                frames += 1
                if max_frames is not None and frames >= max_frames:
                    break
                if stop is not None and stopping:
                    break
                wait = max(0.0, refresh_s - (time.monotonic() - started))
                if stop is None:
                    sleep(wait)
                else:
                    stopping = stop.wait(wait)
    except KeyboardInterrupt:
        # Live's exit has already left the alternate screen and shown the cursor again
        pass
    finally:
        restore_sigterm()
        if not console.is_terminal:
            console.line()  # Live ends its last frame without a newline when it is not a terminal
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM (`timeout`, `kill`) leave like Ctrl-C does, through Live's exit, so the
    terminal is not left on the alternate screen without a cursor. Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # only the main thread may set handlers
    previous = signal.signal(signal.SIGTERM, _interrupt)

    def restore() -> None:
        # None: the old handler was not set from Python; the default is the closest match
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)

    return restore


def main_tui(
    root: Path,
    *,
    gpu: str = "auto",
    refresh_s: float = 1.0,
    once: bool = False,
    pattern: re.Pattern[str] | None = None,
    console: Console | None = None,
    get_time: Callable[[], float] = time.time,
    backend: GpuBackend | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_frames: int | None = None,
    bell: bool = False,
    stall_after_s: float | None = None,
    samples_run: str | None = None,
    diff: bool = False,
    peak_tflops: float | None = None,
    log_run: str | None = None,
    stop: threading.Event | None = None,
    on_view: Callable[[TuiView], None] | None = None,
) -> int:
    """The `tui` command after validation. `backend` (an opened GPU backend) replaces `gpu`;
    `sleep` and `max_frames` bound the live loop for tests; `bell` rings the terminal bell on
    news; `stall_after_s` sets the stall window (as `serve --stall-after`). `log_run`: the run
    whose output is shown. `stop`: the live view ends when it is set (`run --tui`, when the job
    has ended) and its last frame stays on the screen. `on_view` is given the view (to change
    `log_run`)."""
    from mudpuppy_monitor.core import Monitor

    monitor = Monitor(root, clock=get_time, stall_after_s=stall_after_s)
    news = None
    if not once:
        news = News(monitor, clock=get_time, stall_after_s=stall_after_s)
    view = TuiView(
        monitor,
        str(root),
        pattern=pattern,
        get_time=get_time,
        news=news,
        bell=bell,
        samples_run=samples_run,
        diff=diff,
        log_run=log_run,
    )
    if on_view is not None:
        on_view(view)
    console = console or Console()
    if backend is None and gpu != "none":
        from mudpuppy_monitor.gpu import open_backend

        backend = open_backend(gpu)
    if backend is not None:
        from mudpuppy_monitor.gpu import attribute

        view.backend = backend
        view.attribute = attribute
    tracker = _efficiency(monitor, backend, peak_tflops)
    if once:
        # one direct sample: no thread to start, and no empty line from a sampler not yet ticked
        if backend is not None:
            view.sampler = one = OneSample(backend)
            monitor.refresh()
            tracker.observe(one.latest())  # MFU from one sample; J/token needs two readings
        try:
            return run_once(view, console)
        finally:
            if backend is not None:
                backend.close()
    sampler = None
    if backend is not None:
        from mudpuppy_monitor.gpu import GpuSampler

        sampler = GpuSampler(backend, interval_s=max(0.2, min(refresh_s, 1.0)))
        view.sampler = sampler
        sampler.add_listener(tracker.observe)
        sampler.start()
    try:
        code = run_live(
            view,
            console,
            refresh_s,
            sleep=sleep,
            max_frames=max_frames,
            screen=console.is_terminal,
            stop=stop,
        )
        if stop is not None and stop.is_set() and console.is_terminal:
            # the live view drew on the alternate screen, which is gone: the final state stays
            console.print(Frame(view.snapshot(), fit_height=False))
        return code
    finally:
        if sampler is not None:
            sampler.stop()  # the worker first: closing the library under a call can crash it
        if backend is not None:
            backend.close()


def _efficiency(
    monitor: Monitor, backend: GpuBackend | None, peak_tflops: float | None
) -> EfficiencyTracker:
    """MFU, J/token and kWh in the summaries the view reads (docs/efficiency.md)."""
    from mudpuppy_monitor.efficiency import EfficiencyTracker

    sampling = backend is not None and backend.kind != "none"
    reason = "turned off with --gpu none" if backend is None else backend.reason
    tracker = EfficiencyTracker(
        monitor, sampling=sampling, sampling_reason=reason, peak_tflops=peak_tflops
    )
    monitor.annotator = tracker
    return tracker


class OneSample:
    """A sampler stand-in for `--once`: asks the backend once, on first use."""

    def __init__(self, backend: GpuBackend) -> None:
        self.backend = backend
        self._samples: list[GpuSample] | None = None

    def latest(self) -> list[GpuSample]:
        if self._samples is None:
            self._samples = list(self.backend.sample())
        return self._samples
