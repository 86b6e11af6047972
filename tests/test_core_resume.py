"""Resumed runs in the core: a `start` with `resumed_from` R supersedes what earlier attempts
logged past step R; series, cursors, the summary and the markers show one curve, the export keeps
the superseded points on request (docs/run-format.md, "Resumed runs")."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from mudpuppy_callback import encode_line

from mudpuppy_monitor.core import Monitor

T0 = 1_700_000_000.0


class Events:
    """An events.jsonl written line by line, seq and t counting up."""

    def __init__(self, root: Path, name: str = "r") -> None:
        (root / name).mkdir(parents=True, exist_ok=True)
        self.path = root / name / "events.jsonl"
        self.seq = 0

    def lines(self, *events: dict) -> bytes:
        out = b""
        for e in events:
            out += encode_line({"v": 1, "seq": self.seq, "t": T0 + self.seq, **e})
            self.seq += 1
        return out

    def write(self, *events: dict) -> None:
        with open(self.path, "ab") as f:
            f.write(self.lines(*events))


def metrics(step: int, loss: float, **more: float) -> dict:
    return {"kind": "metrics", "step": step, "values": {"loss": loss, **more}}


def attempt_one(ev: Events, last: int = 15) -> list[dict]:
    out = [{"kind": "start", "run_id": "x"}]
    for s in range(1, last):
        out.append(metrics(s, 10.0 - s * 0.1, epoch=s / 20))
        if s % 5 == 0:
            out.append({"kind": "eval", "step": s, "values": {"eval_loss": 9.0 - s * 0.1}})
            out.append({"kind": "lora", "step": s, "layers": {"m.q": {"A": 1.0, "B": s / 10}}})
        if s == 10:
            out.append({"kind": "checkpoint", "step": 10, "path": "out/checkpoint-10"})
    out.append({"kind": "end", "status": "crashed", "step": last - 1, "error": "killed by SIGKILL"})
    return out


def attempt_two(start: int = 11, stop: int = 21) -> list[dict]:
    out = [{"kind": "start", "run_id": "x", "resumed_from": start - 1}]
    for s in range(start, stop):
        out.append(metrics(s, 5.0 - s * 0.1, epoch=s / 20))
    out.append({"kind": "end", "status": "completed", "step": stop - 1})
    return out


def test_a_resumed_attempt_supersedes_the_steps_after_its_checkpoint(tmp_path: Path) -> None:
    ev = Events(tmp_path)
    ev.write(*attempt_one(ev), *attempt_two())  # both attempts in one read
    mon = Monitor(tmp_path)
    mon.refresh()
    loss = mon.series("r", ["loss"])["loss"]
    assert loss["x"] == list(range(1, 21))
    assert loss["y"][:10] == [10.0 - s * 0.1 for s in range(1, 11)]
    assert loss["y"][10:] == [5.0 - s * 0.1 for s in range(11, 21)]
    assert mon.series("r", ["eval_loss"])["eval_loss"]["x"] == [5, 10]
    assert mon.lora("r")["steps"] == [5, 10]
    s = mon.summary("r")
    assert (s.status, s.step, s.error) == ("completed", 20, None)
    assert s.best_loss == 5.0 - 2.0  # from the resumed attempt; attempt one's 8.6 is gone
    assert s.epoch == 1.0
    kinds = [(m["kind"], m["step"]) for m in mon.detail("r")["markers"]]
    # attempt one's end (step 14) was past the checkpoint: only the restart marks the seam
    assert kinds == [("checkpoint", 10), ("restart", 10), ("end", 20)]
    restart = mon.detail("r")["markers"][1]
    assert restart["detail"] == (
        "restarted (resumed from 10); the attempt before ended crashed: killed by SIGKILL"
    )
    # steps 11-14 of attempt one: loss, epoch and the derived steps/s
    assert mon.detail("r")["superseded_points"] == 3 * 4


def test_the_superseding_is_the_same_live_and_read_at_once(tmp_path: Path) -> None:
    """Read line by line as they are written, the store ends where a cold read ends, and the
    rewrite gives the run a new generation (clients refetch: the indices they hold are void)."""
    live_root, cold_root = tmp_path / "live", tmp_path / "cold"
    live, cold = Events(live_root), Events(cold_root)
    mon = Monitor(live_root)
    events = attempt_one(live) + attempt_two()
    generations = set()
    for e in events:
        live.write(e)
        mon.refresh()
        generations.add(mon.generation("r"))
    cold.write(*events)
    ref = Monitor(cold_root)
    ref.refresh()
    assert mon.series("r") == ref.series("r")
    assert mon.counts("r") == ref.counts("r")
    assert len(generations) == 2  # one rewrite: the resumed start
    gen, grown = mon.points_since("r", {}, ["loss"])
    assert grown["loss"]["step"] == list(range(1, 21))


def test_a_cursor_of_the_old_generation_is_refused_by_its_number(tmp_path: Path) -> None:
    ev = Events(tmp_path)
    ev.write(*attempt_one(ev))
    mon = Monitor(tmp_path)
    mon.refresh()
    before = mon.generation("r")
    held = mon.counts("r")["loss"]
    assert held == 14
    ev.write(*attempt_two(stop=12))
    mon.refresh()
    gen, grown = mon.points_since("r", {"loss": held}, ["loss"])
    assert gen != before  # the client sees another generation and refetches
    assert mon.counts("r")["loss"] == 11 and grown == {}


def test_resuming_twice_and_a_restart_from_scratch(tmp_path: Path) -> None:
    ev = Events(tmp_path)
    ev.write(*attempt_one(ev, last=18))  # 1..17
    ev.write(*attempt_two(start=16, stop=19)[:-1])  # resumed from 15: 16..18, then dies
    ev.write(*attempt_two(start=11, stop=13))  # resumed from 10 (an older checkpoint)
    mon = Monitor(tmp_path)
    mon.refresh()
    assert mon.series("r", ["loss"])["loss"]["x"] == list(range(1, 13))
    restarts = [m for m in mon.detail("r")["markers"] if m["kind"] == "restart"]
    assert [m["step"] for m in restarts] == [10]  # the one at 15 was past the new seam
    # a start without resumed_from (a run restarted from scratch) hides nothing
    ev.write({"kind": "start", "run_id": "x"}, metrics(1, 3.0))
    mon.refresh()
    assert mon.series("r", ["loss"])["loss"]["x"] == [*range(1, 13), 1]


def test_the_export_leaves_superseded_points_out_unless_asked(tmp_path: Path) -> None:
    ev = Events(tmp_path)
    ev.write(*attempt_one(ev), *attempt_two())
    mon = Monitor(tmp_path)
    mon.refresh()
    rows = list(csv.reader(io.StringIO("".join(mon.export("r", "csv")))))
    assert rows[0] == ["series", "step", "t", "value"]
    assert [int(r[1]) for r in rows if r[0] == "loss"] == list(range(1, 21))
    marked = list(csv.reader(io.StringIO("".join(mon.export("r", "csv", superseded=True)))))
    assert marked[0] == ["series", "step", "t", "value", "superseded"]
    loss = [(int(r[1]), r[4]) for r in marked[1:] if r[0] == "loss"]
    assert loss == [(s, "0") for s in range(1, 21)] + [(s, "1") for s in range(11, 15)]
    lora = [(r[0], int(r[1]), r[4]) for r in marked[1:] if r[0].startswith("lora/")]
    assert ("lora/m.q/B", 5, "0") in lora and ("lora/m.q/B", 10, "0") in lora
    objs = [json.loads(x) for x in "".join(mon.export("r", "jsonl", True)).splitlines()]
    old = [(o["series"], o["step"]) for o in objs if o["superseded"]]
    assert ("loss", 14) in old and ("loss", 11) in old and ("loss", 10) not in old
