"""Efficiency through a real server: the fake GPU backend (with its energy counter) and a native
run written by the real RunWriter with tokens_seen and model_shape. MFU, J/token and kWh from
the API equal the numbers worked out here from what the server read: the run's events and the
sampler's own samples (and, to the interpolation error, the fake counter's closed form)."""

from __future__ import annotations

import bisect
import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from mudpuppy_callback import RunWriter

from mudpuppy_monitor.efficiency import JPT_SERIES, MFU_SERIES
from mudpuppy_monitor.gpu.fake import fake_energy_j, fake_uuid
from tests.serverutil import LiveServer
from tests.test_efficiency_tracker import FLOPS_PER_TOKEN, SHAPE

PEAK_TFLOPS = 100.0  # the simulated device is in no table: a peak by hand, as --peak-tflops does
INTERVAL_S = 1.0
TOKENS_PER_STEP = 2048


def write_run(root: Path, seconds: float) -> Path:
    writer = RunWriter(
        root,
        "eff",
        config={"model": "tiny", "method": "full", "precision": "bf16"},
        gpus=[fake_uuid(0, 0)],  # the run is on simulated device 0
        meta={"model_shape": SHAPE},
        max_steps=1000,
    )
    assert writer.dir is not None
    deadline = time.time() + seconds
    step = 0
    while time.time() < deadline:
        step += 1
        writer.log(step, {"loss": 2.0 / step, "tokens_seen": step * TOKENS_PER_STEP})
        time.sleep(0.15)
    writer.close()
    return writer.dir


def wait_for(server: LiveServer, path: str, ok, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        doc = server.get_json(path)
        if ok(doc):
            return doc
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never got there: {doc}")
        time.sleep(0.1)


def interpolate(samples: list[tuple[float, float]], t: float) -> float:
    """The energy counter at `t`, linear between the two samples around it."""
    ts = [s[0] for s in samples]
    i = bisect.bisect_right(ts, t)
    (t0, e0), (t1, e1) = samples[i - 1], samples[i] if i < len(samples) else samples[i - 1]
    return e0 if t1 == t0 else e0 + (e1 - e0) * (t - t0) / (t1 - t0)


def test_mfu_and_joules_per_token_equal_the_hand_computed_numbers(tmp_path) -> None:
    settings = dict(gpu="fake", gpu_interval_s=0.2, efficiency_interval_s=INTERVAL_S)
    with LiveServer(tmp_path, peak_tflops=PEAK_TFLOPS, **settings) as server:
        run_dir = write_run(tmp_path, seconds=4.5)
        path = f"/api/runs/{quote('eff')}"
        detail = wait_for(
            server,
            path,
            lambda d: (
                d["summary"]["status"] == "completed" and d["efficiency"]["last_seen_t"] is not None
            ),
        )
        time.sleep(0.6)  # a few more ticks: nothing may change once the run has ended
        detail = server.get_json(path)
        samples = [(s.t, s.energy_j) for s in server.ctx.sampler.history(0)]
        by_step = server.get_json(f"{path}/series?names={MFU_SERIES},{JPT_SERIES}&x=step")
        by_time = server.get_json(f"{path}/series?names={MFU_SERIES},{JPT_SERIES}&x=time")

    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    tokens = [
        (e["step"], e["t"], e["values"]["tokens_seen"]) for e in events if e["kind"] == "metrics"
    ]
    eff, summary = detail["efficiency"], detail["summary"]
    since, last = eff["since_t"], eff["last_seen_t"]
    # the samples the run's energy was accounted from: every tick between those two
    assert since in [t for t, _ in samples] and last in [t for t, _ in samples]

    # the series: from the first token count on a GPU, an interval ends at the first count at
    # least 1 s later; J/token is the counter's energy over it (linear between samples) over
    # its tokens, MFU its tokens/s x FLOPs per token over the peak
    on_gpu = [p for p in tokens if since <= p[1] <= last]
    expected = []
    a = on_gpu[0]
    for p in on_gpu[1:]:
        if p[1] - a[1] >= INTERVAL_S:
            joules = interpolate(samples, p[1]) - interpolate(samples, a[1])
            tps = (p[2] - a[2]) / (p[1] - a[1])
            expected.append((p[0], p[1], joules / (p[2] - a[2]), tps * FLOPS_PER_TOKEN / 100e12))
            # the fake counter is the exact integral of its power curve: linear interpolation
            # between 0.2 s samples is within 0.1 % of it
            exact = fake_energy_j(0, 0, p[1], since=a[1])
            assert joules == pytest.approx(exact, rel=1e-3)
            a = p
    assert len(expected) >= 2, (tokens, since, last)
    mfu, jpt = by_step["series"][MFU_SERIES], by_step["series"][JPT_SERIES]
    assert mfu["x"] == jpt["x"] == [e[0] for e in expected]
    assert by_time["series"][JPT_SERIES]["x"] == [e[1] for e in expected]
    assert jpt["y"] == pytest.approx([e[2] for e in expected], rel=1e-9)
    assert mfu["y"] == pytest.approx([e[3] for e in expected], rel=1e-9)
    assert eff["intervals"] == len(expected)

    # the summary: tokens/s over the last minute of the run's events (all of them here) ...
    first, last_point = tokens[0], tokens[-1]
    tps = (last_point[2] - first[2]) / (last_point[1] - first[1])
    assert summary["tokens_per_s"] == pytest.approx(tps, rel=1e-12)
    # ... MFU over the one device the run was on ...
    assert summary["mfu"] == pytest.approx(tps * FLOPS_PER_TOKEN / (PEAK_TFLOPS * 1e12), rel=1e-9)
    assert [d["uuid"] for d in eff["devices"]] == [fake_uuid(0, 0)]
    # ... J/token over the window from the first count on a GPU to the last one covered ...
    w0, w1 = on_gpu[0], on_gpu[-1]
    assert (eff["window"]["t0"], eff["window"]["t1"]) == (w0[1], w1[1])
    window_j = interpolate(samples, w1[1]) - interpolate(samples, w0[1])
    assert summary["joules_per_token"] == pytest.approx(window_j / (w1[2] - w0[2]), rel=1e-9)
    # ... and the energy of every tick the run was on the device
    energy = dict(samples)
    assert summary["energy_kwh"] == pytest.approx((energy[last] - energy[since]) / 3.6e6, rel=1e-9)
    assert eff["energy"]["method"] == "counter" and eff["simulated"] is True
    assert summary["efficiency_note"] is None and eff["reasons"] == {}


def test_without_gpu_sampling_the_figures_are_null_and_say_why(tmp_path) -> None:
    with LiveServer(tmp_path, gpu="none") as server:
        write_run(tmp_path, seconds=0.5)
        summary = wait_for(
            server, f"/api/runs/{quote('eff')}", lambda d: d["summary"]["status"] == "completed"
        )["summary"]
        listed = server.get_json("/api/runs")["runs"][0]
        metrics = server.get("/metrics")[2].decode()
    for s in (summary, listed):
        assert (s["mfu"], s["joules_per_token"], s["energy_kwh"]) == (None, None, None)
        assert s["efficiency_note"] == "no GPU sampling (GPU sampling turned off)"
        assert s["tokens_per_s"] > 0
    assert "mudpuppy_run_mfu_ratio{" not in metrics


def test_metrics_carry_the_efficiency_gauges_and_the_energy_counter(tmp_path) -> None:
    settings = dict(gpu="fake", gpu_interval_s=0.2, efficiency_interval_s=INTERVAL_S)
    with LiveServer(tmp_path, peak_tflops=PEAK_TFLOPS, **settings) as server:
        write_run(tmp_path, seconds=2.0)
        wait_for(server, "/api/runs/eff", lambda d: d["summary"]["status"] == "completed")
        summary = server.get_json("/api/runs/eff")["summary"]
        text = server.get("/metrics")[2].decode()
    lines = {
        line.split(" ")[0]: line.split(" ")[1] for line in text.splitlines() if line[:1] != "#"
    }
    assert float(lines['mudpuppy_run_mfu_ratio{run="eff"}']) == pytest.approx(summary["mfu"])
    assert float(lines['mudpuppy_run_joules_per_token{run="eff"}']) == pytest.approx(
        summary["joules_per_token"]
    )
    assert float(lines['mudpuppy_run_energy_joules{run="eff"}']) == pytest.approx(
        summary["energy_kwh"] * 3.6e6
    )
    assert any(k.startswith('mudpuppy_gpu_energy_joules_total{gpu="0"') for k in lines)
