"""The samples pane of the terminal view: runs written by the real writer, read by the real
core, rendered by Rich into a string."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from mudpuppy_callback import RunWriter
from rich.console import Console

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.tui.app import TuiView, main_tui
from mudpuppy_monitor.tui.render import fit_height, render_snapshot
from mudpuppy_monitor.tui.samples import SampleLine, SamplesPane, sample_lines
from tests.test_tui_render import _run, _snapshot, render_plain

T0 = 1_700_000_000.0


def write(root: Path, name: str, t0: float, prompts: int = 3, steps: int = 10) -> None:
    with RunWriter(root, name=name, clock=lambda: t0) as run:
        for step in range(1, steps + 1):
            run.log(step, {"loss": 1.0 / step})
            if step % 5 == 0:
                items = [
                    {"prompt": "Tell a story", "completion": f"once upon {step}\nthe end"},
                    {"prompt": "<img src=x onerror=alert(1)>", "completion": "\x1b[31mred\u202e!"},
                    {"prompt": "long", "completion": "x" * 9000},
                ]
                items += [{"prompt": f"p{k}", "completion": f"c{k}"} for k in range(prompts - 3)]
                run.log_samples(step, items[:prompts] if step == steps else items[:1])


def once(root: Path, width: int = 100, **kw: object) -> list[str]:
    out = StringIO()
    main_tui(root, once=True, gpu="none", console=Console(file=out, width=width),
             get_time=lambda: T0 + 100, **kw)  # type: ignore[arg-type]  # fmt: skip
    return out.getvalue().splitlines()


def test_the_newest_completion_of_each_prompt_as_text(tmp_path: Path) -> None:
    write(tmp_path, "chat", T0)
    lines = once(tmp_path)
    at = lines.index("samples chat  newest completion of each prompt")
    assert lines[at + 1 :] == [
        "  step 10  Tell a story ▸ once upon 10⏎the end",
        # an escape sequence and a bidi override from the run reach the terminal as `?`
        "  step 10  <img src=x onerror=alert(1)> ▸ ?[31mred?!",
        "  step 10  long ▸ " + "x" * 79 + "… ✂",  # 100 columns exactly
    ]
    assert all(len(line) <= 100 for line in lines)


def test_the_pane_follows_the_newest_run_with_samples_or_the_one_asked_for(tmp_path: Path) -> None:
    write(tmp_path, "older", T0, prompts=3)
    with RunWriter(tmp_path, name="plain", clock=lambda: T0 + 50) as run:
        run.log(1, {"loss": 1.0})  # the most recently active run, without samples
    assert "samples older  newest completion of each prompt" in once(tmp_path)
    assert once(tmp_path, samples_run="plain")[-1] == "samples plain  no samples logged"
    assert once(tmp_path, samples_run="nope")[-1] == "samples nope  no such run"


def test_an_older_prompt_keeps_its_own_newest_step_and_many_are_counted(tmp_path: Path) -> None:
    write(tmp_path, "wide", T0, prompts=12, steps=15)  # step 5 and 10: one prompt; 15: twelve
    lines = once(tmp_path, width=120)
    at = lines.index("samples wide  newest completion of each prompt")
    pane = lines[at + 1 :]
    assert len(pane) == 9 and pane[-1] == "  +4 more prompt(s)"
    assert pane[0] == "  step 15  Tell a story ▸ once upon 15⏎the end"


def test_samples_are_read_again_only_when_they_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "chat", T0)
    mon = Monitor(tmp_path, clock=lambda: T0 + 100)
    reads: list[str] = []
    real = mon.samples
    monkeypatch.setattr(mon, "samples", lambda run, **kw: reads.append(run) or real(run, **kw))
    view = TuiView(mon, str(tmp_path), get_time=lambda: T0 + 100)
    for _ in range(3):
        snap = view.snapshot()
    assert reads == ["chat"] and snap.samples is not None and len(snap.samples.lines) == 3
    with RunWriter(tmp_path, name="chat", resume=True, clock=lambda: T0 + 101) as run:
        run.log_samples(11, [{"prompt": "Tell a story", "completion": "new"}])
    snap = view.snapshot()
    assert reads == ["chat", "chat"]
    assert snap.samples is not None and snap.samples.lines[0] == SampleLine(
        "Tell a story", "new", 11, False
    )


def test_a_narrow_terminal_cuts_lines_and_keeps_the_cut_mark() -> None:
    pane = SamplesPane("r", "r", (SampleLine("a prompt " * 10, "y" * 500, 123456, True),), 1)
    (title, line) = (t.plain for t in sample_lines(pane, 40))
    assert title == "samples r  newest completion of each prompt"
    # the prompt gets at most a third of the line (8 columns at least), the completion the rest
    assert line == "  step 123456  a prompt a p… ▸ yyyyyy… ✂"
    assert len(line) == 40


def test_the_pane_takes_its_lines_from_the_runs_table_when_the_height_is_short() -> None:

    runs = [_run(id=f"r{i}", name=f"r{i}") for i in range(10)]
    lines = tuple(SampleLine(f"p{k}", f"c{k}", 5, False) for k in range(3))
    pane = SamplesPane("r0", "r0", lines, 3)
    snap = _snapshot(runs=runs, gpus=(), loss={}, samples=pane)
    # 14 lines: header, table header, 7 rows, "+3 more", the pane's title and 3 prompts
    assert fit_height(snap, 14) == (7, None)
    out = render_plain(render_snapshot(snap, 100, 7, None), 100).splitlines()
    assert len(out) == 14 and out[-4:] == [
        "samples r0  newest completion of each prompt",
        "  step 5  p0 ▸ c0",
        "  step 5  p1 ▸ c1",
        "  step 5  p2 ▸ c2",
    ]
