"""Rate limits per channel and run: cooldowns, budgets, and what is told about held messages."""

from __future__ import annotations

from mudpuppy_monitor.notify.events import Event, RunInfo
from mudpuppy_monitor.notify.limits import RateLimiter
from mudpuppy_monitor.notify.rules import RuleEngine
from mudpuppy_monitor.notify.settings import Limits, RuleSettings


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def ev(rule: str = "spike", run: str = "a") -> Event:
    return Event(rule, run, run, 1, 0.0, f"{rule} at step 1")


def test_cooldown_holds_the_same_rule_for_the_same_run() -> None:
    clock = Clock()
    lim = RateLimiter(Limits(cooldown_s=600, max_per_run=100), clock)
    assert lim.admit(ev()) == ev()
    clock.t = 599
    assert lim.admit(ev()) is None
    assert lim.admit(ev()) is None
    assert lim.admit(ev("stalled")) is not None  # another rule has its own cooldown
    assert lim.admit(ev(run="b")) is not None  # another run too
    clock.t = 600
    told = lim.admit(ev())
    assert told is not None and told.suppressed == 2
    assert told.text == "a: spike at step 1 (2 similar notifications held back)"
    assert lim.held_total == 2


def test_a_flapping_stall_is_not_a_storm() -> None:
    # the status machine flaps running <-> stalled every 2 minutes for an hour: 30 stalls
    clock = Clock(1000.0)
    engine = RuleEngine(RuleSettings(), since=0.0, clock=clock)
    lim = RateLimiter(Limits(cooldown_s=1800), clock)
    engine.prime(RunInfo("a", "a", "running", last_event_t=990.0))
    sent = []
    for i in range(60):
        clock.t += 60
        status = "stalled" if i % 2 == 0 else "running"
        for event in engine.observe_run(RunInfo("a", "a", status, last_event_t=clock.t - 61)):
            admitted = lim.admit(event)
            if admitted is not None:
                sent.append(admitted)
    # one at the first stall, one when the 30-minute cooldown is over (saying 14 were held)
    assert [(s.rule, s.suppressed) for s in sent] == [("stalled", 0), ("stalled", 14)]
    assert lim.held_total == 28


def test_budget_per_run_across_rules() -> None:
    clock = Clock()
    lim = RateLimiter(Limits(cooldown_s=0, max_per_run=3, window_s=3600), clock)
    rules = ["spike", "stalled", "nonfinite", "eval_improved"]
    assert [lim.admit(ev(r)) is not None for r in rules] == [True, True, True, False]
    assert lim.admit(ev("spike", run="b")) is not None  # the budget is per run
    clock.t = 3600  # the first three leave the window
    told = lim.admit(ev("eval_improved"))
    assert told is not None and told.suppressed == 1


def test_final_statuses_pass_cooldown_and_budget() -> None:
    clock = Clock()
    lim = RateLimiter(Limits(cooldown_s=3600, max_per_run=1), clock)
    assert lim.admit(ev("spike")) is not None
    assert lim.admit(ev("stalled")) is None  # budget used up
    for rule in ("crashed", "completed", "failed", "interrupted", "completed"):
        assert lim.admit(ev(rule)) is not None


def test_channels_limit_independently() -> None:
    clock = Clock()
    slack = RateLimiter(Limits(cooldown_s=600), clock)
    ntfy = RateLimiter(Limits(cooldown_s=600), clock)
    assert slack.admit(ev()) is not None
    assert slack.admit(ev()) is None
    assert ntfy.admit(ev()) is not None


def test_forget_clears_a_run() -> None:
    clock = Clock()
    lim = RateLimiter(Limits(cooldown_s=600), clock)
    lim.admit(ev())
    lim.admit(ev())
    lim.forget("a")
    told = lim.admit(ev())
    assert told is not None and told.suppressed == 0
