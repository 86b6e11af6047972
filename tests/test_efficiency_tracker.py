"""The tracker on a real Monitor over real run files, fed GPU samples at chosen times, so every
expected number is worked out by hand in the test."""

from __future__ import annotations

import pytest

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.efficiency import JPT_SERIES, MFU_SERIES, EfficiencyTracker
from mudpuppy_monitor.gpu.records import GpuProcess, GpuSample
from tests.serverutil import RunDir

H100 = "NVIDIA H100 80GB HBM3"  # dense bf16 peak 989.5 TFLOPS (gpu/peaks.py)
# A full fine-tune: 1,000,000 parameters, of which a 100,000-entry input embedding (a lookup,
# not a matmul); 4 layers of 8 heads of 64; 512-token sequences. FLOPs per token, by hand:
#   6 x (1,000,000 - 100,000) + 12 x 4 x (8 x 64) x 512 = 5,400,000 + 12,582,912 = 17,982,912
SHAPE = {
    "params_total": 1_000_000,
    "params_trainable": 1_000_000,
    "params_embedding": 100_000,
    "embedding_trainable": True,
    "tied_embeddings": False,
    "num_layers": 4,
    "hidden_size": 512,
    "num_attention_heads": 8,
    "head_dim": 64,
    "seq_len": 512,
    "method": "full",
}
FLOPS_PER_TOKEN = 17_982_912


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_run(root, run_id="a", gpus=("GPU-aaa",), precision="bf16", shape=SHAPE) -> RunDir:
    meta = {"gpus": list(gpus), "config": {"model": "tiny", "precision": precision}}
    if shape is not None:
        meta["model_shape"] = shape
    run = RunDir(root, run_id, meta=meta, start=False)
    run.append("start", t=100.0)
    return run


def sample(t, uuid="GPU-aaa", index=0, name=H100, energy=None, power=None, pids=()):
    return GpuSample(
        index=index,
        name=name,
        uuid=uuid,
        t=t,
        power_w=power,
        energy_j=energy,
        processes=tuple(GpuProcess(p, None) for p in pids),
    )


def setup(tmp_path, **kw):
    clock = Clock(100.0)
    monitor = Monitor(tmp_path, clock=clock, parallel=False)
    kw.setdefault("sampling", True)
    tracker = EfficiencyTracker(monitor, interval_s=10.0, **kw)
    monitor.annotator = tracker
    return monitor, tracker, clock


TOKENS = [(0, 100.0, 0), (10, 105.0, 50_000), (20, 110.0, 100_000), (40, 120.0, 200_000)]


def feed(monitor, tracker, clock, run, *, watts=500.0, name=H100, counter=True, until=121):
    """Ticks at t = 100..until with the run's token counts written as they happen."""
    pending = list(TOKENS)
    for k in range(until - 100 + 1):
        t = 100.0 + k
        clock.t = t
        while pending and pending[0][1] <= t:
            step, tt, tokens = pending.pop(0)
            run.metrics(step, t=tt, tokens_seen=tokens, loss=1.0)
        monitor.refresh()
        energy = 1_000_000.0 + watts * k if counter else None
        other = sample(t, uuid="GPU-bbb", index=1, energy=77.0 * k, power=77.0)
        tracker.observe([sample(t, name=name, energy=energy, power=watts), other])


def test_mfu_j_per_token_and_kwh_equal_the_hand_computed_numbers(tmp_path) -> None:
    monitor, tracker, clock = setup(tmp_path)
    run = make_run(tmp_path)
    feed(monitor, tracker, clock, run)
    s = monitor.summary("a")
    # tokens/s over the last minute: 200,000 tokens in 20 s
    assert s.tokens_per_s == 10_000.0
    mfu = 10_000 * FLOPS_PER_TOKEN / 989.5e12
    assert s.mfu == pytest.approx(mfu, rel=1e-12)
    # 500 W on the run's one device for 20 s around 200,000 tokens (the other device is not its)
    assert s.joules_per_token == pytest.approx(500 * 20 / 200_000, rel=1e-12)
    # energy from the first tick (t=100) to the last (t=121)
    assert s.energy_kwh == pytest.approx(500 * 21 / 3.6e6, rel=1e-12)
    assert s.efficiency_note is None
    # the series: one point per 10 s interval, at the step that ends it
    got = monitor.series("a", [MFU_SERIES, JPT_SERIES])
    assert got[MFU_SERIES]["x"] == [20, 40]
    assert got[MFU_SERIES]["y"] == pytest.approx([mfu, mfu], rel=1e-12)
    assert got[JPT_SERIES]["x"] == [20, 40]
    assert got[JPT_SERIES]["y"] == pytest.approx([5000 / 100_000] * 2, rel=1e-12)
    detail = monitor.detail("a")["efficiency"]
    assert detail["flops_per_token"] == FLOPS_PER_TOKEN
    assert detail["precision"] == "bf16"
    assert [d["uuid"] for d in detail["devices"]] == ["GPU-aaa"]
    assert detail["devices"][0]["peak_flops"] == 989.5e12
    assert detail["energy"]["method"] == "counter"
    assert detail["window"]["t0"] == 100.0 and detail["window"]["t1"] == 120.0
    assert detail["reasons"] == {}
    assert detail["intervals"] == 2
    # exported like the run's own series
    rows = "".join(monitor.export("a", "csv"))
    assert f"{MFU_SERIES},20,110.0," in rows


def test_power_only_devices_are_integrated_and_said_so(tmp_path) -> None:
    monitor, tracker, clock = setup(tmp_path)
    run = make_run(tmp_path)
    feed(monitor, tracker, clock, run, watts=400.0, counter=False)
    s = monitor.summary("a")
    assert s.joules_per_token == pytest.approx(400 * 20 / 200_000, rel=1e-12)
    detail = monitor.detail("a")["efficiency"]
    assert detail["energy"]["method"] == "power"
    assert detail["window"]["method"] == "power"


def test_unknown_device_has_no_mfu_with_the_reason_and_a_given_peak_fills_it(tmp_path) -> None:
    monitor, tracker, clock = setup(tmp_path)
    run = make_run(tmp_path)
    feed(monitor, tracker, clock, run, name="NVIDIA A10G")
    s = monitor.summary("a")
    assert s.mfu is None
    assert s.joules_per_token is not None
    assert s.efficiency_note == (
        "MFU: no tabulated bf16 peak for 'NVIDIA A10G' (give one with --peak-tflops)"
    )
    assert monitor.series("a", [MFU_SERIES, JPT_SERIES]).keys() == {JPT_SERIES}

    monitor, tracker, clock = setup(tmp_path / "given", peak_tflops=125.0)
    run = make_run(tmp_path / "given")
    feed(monitor, tracker, clock, run, name="NVIDIA A10G")
    s = monitor.summary("a")
    assert s.mfu == pytest.approx(10_000 * FLOPS_PER_TOKEN / 125e12, rel=1e-12)
    assert monitor.detail("a")["efficiency"]["devices"][0]["source"] == "--peak-tflops"


@pytest.mark.parametrize(
    ("precision", "shape", "reason"),
    [
        ("fp32", SHAPE, "no tabulated fp32 peak for 'NVIDIA H100 80GB HBM3'"),
        (None, SHAPE, "the run's precision is unknown (no config.precision in its meta)"),
        ("bf16", None, "FLOPs per token unknown: the run's meta has no model_shape"),
    ],
)
def test_what_the_meta_lacks_is_the_reason(tmp_path, precision, shape, reason) -> None:
    monitor, tracker, clock = setup(tmp_path)
    run = make_run(tmp_path, precision=precision, shape=shape)
    feed(monitor, tracker, clock, run, until=112)
    s = monitor.summary("a")
    assert s.mfu is None
    assert s.efficiency_note.startswith(f"MFU: {reason}")
    assert s.joules_per_token is not None and s.energy_kwh is not None


def test_without_sampling_everything_is_null_with_the_backend_reason(tmp_path) -> None:
    monitor, tracker, _ = setup(tmp_path, sampling=False, sampling_reason="GPU sampling turned off")
    make_run(tmp_path).metrics(10, t=101.0, tokens_seen=10.0)
    monitor.refresh()
    s = monitor.summary("a")
    assert (s.mfu, s.joules_per_token, s.energy_kwh) == (None, None, None)
    assert s.efficiency_note == "no GPU sampling (GPU sampling turned off)"
    assert monitor.detail("a")["efficiency"]["reasons"] == {
        "mfu": "no GPU sampling (GPU sampling turned off)",
        "joules_per_token": "no GPU sampling (GPU sampling turned off)",
        "energy_kwh": "no GPU sampling (GPU sampling turned off)",
    }


def test_a_run_on_no_gpu_and_a_run_without_token_counts(tmp_path) -> None:
    monitor, tracker, clock = setup(tmp_path)
    make_run(tmp_path, "off", gpus=())
    quiet = make_run(tmp_path, "quiet")
    for k in range(5):
        clock.t = 100.0 + k
        quiet.metrics(k, t=clock.t, loss=1.0)  # no tokens_seen
        monitor.refresh()
        tracker.observe([sample(clock.t, energy=1000.0 + 300 * k, power=300.0)])
    off = monitor.summary("off")
    assert off.efficiency_note.startswith("no GPU attributed to the run")
    s = monitor.summary("quiet")
    assert s.mfu is None and s.joules_per_token is None
    assert s.energy_kwh == pytest.approx(300 * 4 / 3.6e6)
    assert s.efficiency_note == (
        "MFU: no tokens/s: the run logs no token count over the last minute; "
        "J/token: no token count: the run logs no tokens_seen"
    )


def test_a_reset_run_starts_over_and_a_removed_run_is_forgotten(tmp_path) -> None:
    monitor, tracker, clock = setup(tmp_path)
    run = make_run(tmp_path)
    feed(monitor, tracker, clock, run, until=112)
    assert monitor.summary("a").energy_kwh is not None
    first_generation = monitor.generation("a")
    run.events.write_text("")  # truncated: a new generation
    clock.t = 113.0
    monitor.refresh()
    assert monitor.generation("a") != first_generation
    assert monitor.series("a", [MFU_SERIES, JPT_SERIES]) == {}
    tracker.observe([sample(113.0, energy=2_000_000.0, power=500.0)])
    detail = monitor.detail("a")["efficiency"]
    assert detail["since_t"] == 113.0 and detail["energy"]["joules"] == 0.0
    import shutil

    shutil.rmtree(run.path)
    monitor.refresh()
    tracker.observe([sample(114.0, energy=2_000_500.0, power=500.0)])
    assert tracker._state == {}


def test_readings_that_stop_for_a_device_leave_the_interval_unmeasured(tmp_path) -> None:
    # two devices until t=110, then only one: [100, 120] lacks the second's energy after 110
    monitor, tracker, clock = setup(tmp_path)
    run = make_run(tmp_path, gpus=("GPU-aaa", "GPU-ccc"))
    pending = list(TOKENS)
    for k in range(22):
        clock.t = t = 100.0 + k
        while pending and pending[0][1] <= t:
            step, tt, tokens = pending.pop(0)
            run.metrics(step, t=tt, tokens_seen=tokens)
        monitor.refresh()
        samples = [sample(t, energy=1e6 + 500 * k, power=500.0)]
        if t <= 110:
            samples.append(sample(t, "GPU-ccc", 2, energy=5e5 + 300 * k, power=300.0))
        tracker.observe(samples)
    got = monitor.series("a", [JPT_SERIES])[JPT_SERIES]
    # the first interval had both devices (800 W x 10 s); the second only one after t=110
    assert got["x"] == [20, 40]
    assert got["y"] == pytest.approx([8000 / 100_000, 5000 / 100_000])
    # MFU over the devices of each interval: two H100s, then one
    mfu = monitor.series("a", [MFU_SERIES])[MFU_SERIES]["y"]
    one = 10_000 * FLOPS_PER_TOKEN / 989.5e12
    assert mfu == pytest.approx([one / 2, one], rel=1e-12)
    s = monitor.summary("a")
    assert s.joules_per_token is None
    assert "energy not measured for" in s.efficiency_note


def test_the_tick_attribution_is_shared_with_the_gpu_payload(tmp_path) -> None:
    from mudpuppy_monitor.gpu.base import backend_json
    from mudpuppy_monitor.server.feed import GpuView, attribution_dict

    monitor, tracker, clock = setup(tmp_path)
    make_run(tmp_path)
    monitor.refresh()
    samples = [sample(100.0, energy=1.0, power=1.0), sample(100.0, "GPU-bbb", 1, energy=1.0)]
    tracker.observe(samples)
    assert tracker.attribution_of(samples) is not None
    assert tracker.attribution_of(list(samples)) is None  # another list: another tick

    class Feed:
        def latest(self):
            return samples

    calls = []

    def known(given):
        calls.append(given)
        return tracker.attribution_of(given)

    view = GpuView(None, Feed(), known)  # type: ignore[arg-type]
    payload = view.payload(monitor, samples)
    assert calls == [samples]
    assert payload["attribution"] == attribution_dict(samples, monitor.summaries())
    assert payload["attribution"]["0"]["runs"] == ["a"]
    assert {k: payload[k] for k in backend_json(None)} == backend_json(None)


def test_a_long_run_holds_minutes_of_points_and_keeps_its_totals(tmp_path) -> None:
    monitor, tracker, clock = setup(tmp_path)
    run = make_run(tmp_path)
    quiet = make_run(tmp_path, "quiet", gpus=("GPU-bbb",))  # on a GPU, no token counts
    for k in range(1500):  # 25 minutes at 1 Hz, a token count every second
        clock.t = t = 100.0 + k
        run.metrics(k, t=t, tokens_seen=1000 * k)
        quiet.metrics(k, t=t, loss=1.0)
        monitor.refresh()
        tracker.observe(
            [
                sample(t, energy=1e6 + 500 * k, power=500.0),
                sample(t, "GPU-bbb", 1, energy=2e6 + 100 * k, power=100.0),
            ]
        )
    for run_id, watts in (("a", 500), ("quiet", 100)):
        state = tracker._state[run_id]
        assert len(state.points) <= 2 * 60 + 2
        track = state.accountant._tracks[f"GPU-{'aaa' if run_id == 'a' else 'bbb'}"]
        assert len(track.ts) <= 2 * 60 + 3
        assert monitor.summary(run_id).energy_kwh == pytest.approx(watts * 1499 / 3.6e6)
    assert monitor.summary("a").joules_per_token == pytest.approx(0.5)
    assert monitor.counts("a")[JPT_SERIES] == 149  # one per 10 s after the first count
