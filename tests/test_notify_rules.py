"""The shared rules: what is news, what is history, and one notification per burst."""

from __future__ import annotations

import math

import pytest

from mudpuppy_monitor.notify.events import EvalPoint, MarkerInfo, RunInfo
from mudpuppy_monitor.notify.rules import RuleEngine, duration
from mudpuppy_monitor.notify.settings import RuleSettings

START = 1_700_000_000.0  # the daemon's start


class Clock:
    def __init__(self, t: float = START) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def engine(clock: Clock | None = None, **settings) -> RuleEngine:
    return RuleEngine(RuleSettings(**settings), since=START, clock=clock or Clock())


def run(status: str = "running", **kw) -> RunInfo:
    base = {"id": "sweep/a", "name": "a", "status": status, "step": 10, "last_event_t": START + 5}
    base.update(kw)
    return RunInfo(**base)


def nan(step: int, t: float, series: str = "loss") -> MarkerInfo:
    return MarkerInfo("nonfinite", step, t, series, f"{series} is NaN at step {step}")


# -- statuses -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "failed", "interrupted", "crashed"])
def test_a_run_that_ended_before_the_start_is_history(status: str) -> None:
    e = engine()
    assert e.observe_run(run(status, last_event_t=START - 3600)) == []


def test_a_run_first_seen_after_it_ended_while_watching_is_news() -> None:
    e = engine()
    [ev] = e.observe_run(run("completed", last_event_t=START + 30, loss=0.25))
    assert (ev.rule, ev.run, ev.name, ev.step, ev.t) == (
        "completed",
        "sweep/a",
        "a",
        10,
        START + 30,
    )
    assert ev.message == "completed at step 10, loss 0.25"
    assert ev.text == "a: completed at step 10, loss 0.25"


def test_primed_runs_are_history_and_their_transitions_are_news() -> None:
    clock = Clock(START + 100)
    e = engine(clock)
    e.prime(run("running", pid=4242))
    assert e.observe_run(run("running", step=11)) == []  # no transition
    [ev] = e.observe_run(run("crashed", pid=4242, step=12))
    assert ev.rule == "crashed"
    assert ev.message == "crashed: process 4242 ended without an end event at step 12"
    assert ev.t == START + 100  # dated when it was noticed
    assert e.observe_run(run("crashed", pid=4242, step=12)) == []  # still crashed: said once


def test_failed_carries_the_error_and_interrupted_says_so() -> None:
    e = engine()
    e.prime(run())
    [ev] = e.observe_run(run("failed", error="CUDA out of memory"))
    assert ev.message == "failed at step 10: CUDA out of memory"
    e.prime(run(id="b", name="b"))
    [ev] = e.observe_run(run("interrupted", id="b", name="b", step=None))
    assert ev.message == "interrupted"


def test_a_resumed_run_that_completes_again_is_news_again() -> None:
    e = engine()
    e.prime(run("completed"))
    assert e.observe_run(run("running", step=11)) == []
    assert [ev.rule for ev in e.observe_run(run("completed", step=20))] == ["completed"]


def test_stalled_from_the_status_machine_is_news_each_time_it_is_entered() -> None:
    clock = Clock(START + 500)
    e = engine(clock)
    e.prime(run("running", last_event_t=START + 100))
    [ev] = e.observe_run(run("stalled", last_event_t=START + 100))
    assert ev.message == "stalled: no event for 7 min at step 10"
    assert e.observe_run(run("running", last_event_t=START + 600)) == []
    # flapping: the rules report each entry; the channels' cooldown keeps it from a storm
    assert len(e.observe_run(run("stalled", last_event_t=START + 600))) == 1


def test_stall_after_decides_stalls_on_tick_once_per_silence() -> None:
    clock = Clock(START + 10)
    e = engine(clock, stall_after_s=300.0)
    e.prime(run("running", last_event_t=START + 5))
    clock.t = START + 305
    assert e.tick() == []  # 300 s exactly is not more than 300 s
    clock.t = START + 306
    [ev] = e.tick()
    assert (ev.rule, ev.message) == ("stalled", "stalled: no event for 5 min at step 10")
    clock.t = START + 900
    assert e.tick() == []  # the same silence
    # the status machine's own "stalled" is not a second source of stall news
    assert e.observe_run(run("stalled", last_event_t=START + 5)) == []
    # an event ends the silence; the next silence is news again
    e.observe_run(run("running", last_event_t=START + 901, step=11))
    clock.t = START + 1202
    [ev] = e.tick()
    assert ev.step == 11


def test_stall_after_ignores_a_silence_that_began_before_the_start() -> None:
    clock = Clock(START + 10)
    e = engine(clock, stall_after_s=60.0)
    e.prime(run("running", last_event_t=START - 3600))
    clock.t = START + 600
    assert e.tick() == []
    # a run first seen while watching whose silence started before us: history as well
    e.observe_run(run("running", id="b", last_event_t=START - 100))
    assert e.tick() == []
    # ended runs never stall
    e.observe_run(run("completed", id="c", last_event_t=START + 1))
    clock.t = START + 10_000
    assert e.tick() == []


def test_without_stall_after_tick_says_nothing() -> None:
    e = engine(Clock(START + 10_000))
    e.prime(run("running", last_event_t=START))
    assert e.tick() == []


# -- markers -------------------------------------------------------------------------------------


def test_a_burst_of_500_nan_steps_is_one_event() -> None:
    e = engine()
    r = run()
    e.prime(r)
    burst = [nan(100 + i, START + 10 + i) for i in range(500)]
    [ev] = e.observe_markers(r, burst)
    assert (ev.rule, ev.step, ev.series, ev.message) == (
        "nonfinite",
        100,
        "loss",
        "loss is NaN at step 100",
    )
    assert e.observe_markers(r, [nan(700, START + 600)]) == []  # the first one was the news


def test_nonfinite_grad_norm_at_the_same_step_is_named_in_the_same_event() -> None:
    e = engine()
    r = run()
    e.prime(r)
    [ev] = e.observe_markers(r, [nan(7, START + 9, "grad_norm"), nan(7, START + 9, "loss")])
    assert ev.series == "grad_norm"
    assert ev.message == "grad_norm is NaN at step 7 (also loss)"


def test_nonfinite_in_series_not_watched_is_not_news() -> None:
    e = engine()
    r = run()
    e.prime(r)
    assert e.observe_markers(r, [nan(3, START + 9, "learning_rate")]) == []
    # configurable
    e2 = engine(nonfinite_series=("learning_rate",))
    e2.prime(r)
    assert len(e2.observe_markers(r, [nan(3, START + 9, "learning_rate")])) == 1


def test_a_restart_rearms_the_first_nonfinite() -> None:
    e = engine()
    r = run()
    e.prime(r)
    assert len(e.observe_markers(r, [nan(5, START + 9)])) == 1
    restart = MarkerInfo("restart", 4, START + 20, None, "restarted (resumed from 4)")
    [ev] = e.observe_markers(r, [restart, nan(6, START + 21)])
    assert ev.step == 6


def test_nonfinite_before_the_start_is_history_and_uses_up_the_first() -> None:
    e = engine()
    r = run()
    e.prime(r, [nan(5, START - 60)])
    assert e.observe_markers(r, [nan(9, START + 9)]) == []
    # read live but dated before the start (a run copied in): history too
    e2 = engine()
    e2.prime(run(id="b"))
    assert e2.observe_markers(run(id="b"), [nan(5, START - 60)]) == []


def test_a_marker_without_a_time_is_dated_by_the_run() -> None:
    e = engine()
    e.prime(run(id="old", last_event_t=START - 999))
    assert e.observe_markers(run(id="old", last_event_t=START - 999), [nan(5, None)]) == []
    e.prime(run(id="new"))
    assert len(e.observe_markers(run(id="new"), [nan(5, None)])) == 1
    # neither has a time: it was read after the start, so it is news
    e.prime(run(id="undated", last_event_t=None))
    assert len(e.observe_markers(run(id="undated", last_event_t=None), [nan(5, None)])) == 1


def test_spikes_in_one_batch_are_one_event_with_their_count() -> None:
    e = engine()
    r = run()
    e.prime(r)
    spikes = [
        MarkerInfo("spike", s, START + s, "loss", f"loss spiked to 9 at step {s}")
        for s in (70, 71, 75)
    ]
    [ev] = e.observe_markers(r, spikes)
    assert (ev.rule, ev.step, ev.count) == ("spike", 70, 3)
    assert ev.message == "loss spiked to 9 at step 70 (and 2 more up to step 75)"


def test_a_marker_read_again_after_a_reset_is_not_news_again() -> None:
    e = engine()
    r = run()
    e.prime(r)
    spike = MarkerInfo("spike", 70, START + 70, "loss", "loss spiked to 9 at step 70")
    assert len(e.observe_markers(r, [spike])) == 1
    e.observe_run(run(generation=2))  # the file was replaced: markers are read from 0
    assert e.observe_markers(run(generation=2), [spike]) == []
    # ... but the first non-finite of the new generation is armed again
    assert len(e.observe_markers(run(generation=2), [nan(3, START + 90)])) == 1


def test_other_markers_are_not_news() -> None:
    e = engine()
    r = run()
    e.prime(r)
    others = [
        MarkerInfo("checkpoint", 10, START + 9, None, "out/checkpoint-10"),
        MarkerInfo("end", 10, START + 9, None, "completed"),
    ]
    assert e.observe_markers(r, others) == []


# -- eval -----------------------------------------------------------------------------------------


def test_eval_improved_against_the_best_so_far() -> None:
    e = engine()
    r = run()
    e.prime(r, evals=[EvalPoint(100, START - 50, 0.9), EvalPoint(200, START - 10, 0.8)])
    assert e.observe_evals(r, [EvalPoint(300, START + 10, 0.85)]) == []  # worse than 0.8
    [ev] = e.observe_evals(r, [EvalPoint(400, START + 20, 0.7)])
    assert (ev.rule, ev.step, ev.series, ev.value) == ("eval_improved", 400, "eval_loss", 0.7)
    assert ev.message == "eval_loss improved to 0.7 at step 400 (best was 0.8)"


def test_eval_improvements_in_one_batch_are_one_event() -> None:
    e = engine()
    r = run()
    e.prime(r)
    points = [EvalPoint(s, START + s, v) for s, v in ((1, 1.0), (2, 0.9), (3, math.nan), (4, 0.5))]
    [ev] = e.observe_evals(r, points)  # the first value is the mark to beat
    assert (ev.step, ev.value, ev.message) == (
        4,
        0.5,
        "eval_loss improved to 0.5 at step 4 (best was 1)",
    )


def test_eval_max_mode_and_min_delta() -> None:
    e = engine(eval_metric="eval_accuracy", eval_mode="max", eval_min_delta=0.01)
    r = run()
    e.prime(r, evals=[EvalPoint(1, START - 5, 0.80)])
    assert e.observe_evals(r, [EvalPoint(2, START + 1, 0.805)]) == []  # within the delta
    assert e.observe_evals(r, [EvalPoint(3, START + 2, 0.79)]) == []
    [ev] = e.observe_evals(r, [EvalPoint(4, START + 3, 0.85)])
    assert ev.series == "eval_accuracy" and ev.value == 0.85


def test_forget_drops_a_run() -> None:
    e = engine()
    e.prime(run("running"))
    e.forget("sweep/a")
    # seen again: a first sighting, judged by its time
    assert e.observe_run(run("completed", last_event_t=START - 10)) == []


def test_duration_words() -> None:
    assert [duration(s) for s in (5, 119, 720, 7199, 9000)] == [
        "5 s",
        "119 s",
        "12 min",
        "120 min",
        "2.5 h",
    ]
