"""GPU lines of the terminal view with the real backends: NVML faked at its Python API, the fake
backend behind a real sampler thread, and a missing driver."""

from __future__ import annotations

import os
import time
from io import StringIO
from pathlib import Path

from rich.console import Console

from mudpuppy_monitor.gpu import open_backend
from mudpuppy_monitor.gpu.fake import FakeBackend, fake_uuid
from mudpuppy_monitor.tui.app import main_tui
from tests.fake_pynvml import FakeNvDevice, make_fake_pynvml
from tests.test_tui_app import write_native_run
from tests.test_tui_render import table_cells


def _console(width: int = 120) -> Console:
    return Console(file=StringIO(), width=width, height=40, color_system=None)


def test_nvml_devices_are_drawn_with_their_runs_by_pid(tmp_path: Path):
    root = tmp_path / "runs"
    write_native_run(root, "live", time.time() - 3)  # its meta pid is this process
    devices = [
        FakeNvDevice(compute=[(os.getpid(), 2 * 1024**3)]),
        FakeNvDevice(
            name="NVIDIA A100-SXM4-40GB",
            uuid="GPU-aaaaaaaa-2222-3333-4444-555555555555",
            util_gpu=3,
            mem_total=40 * 1024**3,
            mem_used=512 * 1024**2,
            temperature=31,
            power_supported=False,
            compute=[(999_999, None)],
        ),
    ]
    backend = open_backend("nvidia", nvidia_module=make_fake_pynvml(devices))
    console = _console()
    assert main_tui(root, once=True, console=console, backend=backend) == 0
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[0].startswith("mudpuppy-monitor  1 run: 1 running  GPU: nvidia  /")
    assert (
        "GPU0 NVIDIA H100 80GB HBM3  util  87%  VRAM 40.0GiB/79.6GiB  64°C  312/700 W  runs: live"
        in lines
    )
    # a card that reports no power, and a stranger's process on it
    assert (
        "GPU1 NVIDIA A100-SXM4-40GB  util   3%  VRAM 512.0MiB/40.0GiB  31°C  - W  runs: - +1 other process"
        in lines
    )


def test_uuid_from_meta_attributes_a_run_to_a_simulated_device(tmp_path: Path):
    root = tmp_path / "runs"
    write_native_run(root, "on-gpu1", time.time() - 3, gpus=[fake_uuid(0, 1)])
    console = _console()
    backend = FakeBackend(devices=2, clock=lambda: 1_800_000_000.0)
    backend.set_processes(0, [])
    backend.set_processes(1, [])
    assert main_tui(root, once=True, console=console, backend=backend) == 0
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    gpu = [line for line in lines if line.startswith("GPU")]
    assert len(gpu) == 2
    assert gpu[0].endswith("runs: -")
    assert gpu[1].endswith("runs: on-gpu1")


def test_live_loop_draws_gpu_lines_from_the_sampler_thread(tmp_path: Path):
    root = tmp_path / "runs"
    write_native_run(root, "live", time.time() - 3)
    console = Console(file=StringIO(), width=120, height=30, force_terminal=True, color_system=None)
    backend = FakeBackend(devices=2)
    waits = []

    def sleep(seconds: float) -> None:
        # let the sampler thread take its first sample before the next frame
        waits.append(seconds)
        deadline = time.monotonic() + 5
        while backend.samples_taken == 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    rc = main_tui(root, refresh_s=0.25, console=console, backend=backend, sleep=sleep, max_frames=2)
    assert rc == 0
    assert len(waits) == 1 and 0 <= waits[0] <= 0.25
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "GPU0 Simulated GPU 80GB (fake)  util " in out
    assert "GPU1 Simulated GPU 80GB (fake)  util " in out
    assert "GPU: fake (simulated)" in out


def test_a_missing_driver_is_a_header_note_not_an_error(tmp_path: Path):
    root = tmp_path / "runs"
    write_native_run(root, "live", time.time() - 3)
    nv = make_fake_pynvml(init_error="LIBRARY_NOT_FOUND")
    backend = open_backend("nvidia", nvidia_module=nv)
    console = _console(200)
    assert main_tui(root, once=True, console=console, backend=backend) == 0
    text = console.file.getvalue()  # type: ignore[attr-defined]
    first = text.splitlines()[0]
    assert first.startswith("mudpuppy-monitor  1 run: 1 running  GPU: none  /")
    assert "(no GPU: " in first
    assert not [line for line in text.splitlines() if line.startswith("GPU0")]
    _, rows = table_cells(text)
    assert rows["live"]["step"] == "40/100"


def test_once_shows_mfu_from_one_sample_and_hides_what_needs_two(tmp_path: Path):
    from tests.serverutil import RunDir
    from tests.test_efficiency_tracker import FLOPS_PER_TOKEN, SHAPE

    root = tmp_path / "runs"
    t0 = time.time() - 10
    meta = {"gpus": [fake_uuid(0, 0)], "model_shape": SHAPE, "config": {"precision": "bf16"}}
    run = RunDir(root, "eff", meta=meta)
    run.metrics(1, t=t0, tokens_seen=0, loss=1.0)
    run.metrics(2, t=t0 + 4, tokens_seen=40_000, loss=0.9)  # 10,000 tokens/s
    plain = RunDir(root, "plain")  # no tokens: its columns stay empty
    plain.metrics(1, loss=1.0)
    console = _console(200)
    backend = FakeBackend(devices=1)
    assert main_tui(root, once=True, console=console, backend=backend, peak_tflops=50.0) == 0
    headers, rows = table_cells(console.file.getvalue())  # type: ignore[attr-defined]
    # 10,000 tokens/s x 17,982,912 FLOPs per token over one 50 TFLOPS device = 0.35966 %
    mfu = 10_000 * FLOPS_PER_TOKEN / 50e12
    assert rows["eff"]["MFU"] == f"{mfu * 100:.3g}%" == "0.36%"
    assert rows["plain"]["MFU"] == "-"
    # energy needs two readings of the counter: one sample has no J/token and no kWh yet
    assert "J/tok" not in headers and "kWh" not in headers


def test_without_any_efficiency_value_the_columns_are_left_out(tmp_path: Path):
    root = tmp_path / "runs"
    write_native_run(root, "live", time.time() - 3)
    console = _console(200)
    assert main_tui(root, once=True, console=console, backend=FakeBackend(devices=1)) == 0
    headers, _ = table_cells(console.file.getvalue())  # type: ignore[attr-defined]
    assert not {"MFU", "J/tok", "kWh"} & set(headers)
