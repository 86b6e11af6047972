from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mudpuppy_monitor.cli import main
from mudpuppy_monitor.gpu.cli import format_table, to_json
from mudpuppy_monitor.gpu.nvidia import NvidiaBackend
from tests.fake_pynvml import FakeNvDevice, make_fake_pynvml, no_nvidia_driver_here


@pytest.mark.skipif(not no_nvidia_driver_here(), reason="this host has an NVIDIA driver")
def test_gpus_without_a_gpu_says_why_and_exits_0(capsys) -> None:
    assert main(["gpus"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no GPU: nvidia: NVML library not found (no NVIDIA driver); amd: ")


@pytest.mark.skipif(not no_nvidia_driver_here(), reason="this host has an NVIDIA driver")
def test_gpus_json_without_a_gpu(capsys) -> None:
    assert main(["gpus", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["backend"] == "none"
    assert doc["devices"] == []
    assert doc["reason"].startswith("nvidia: NVML library not found")


@pytest.mark.skipif(not no_nvidia_driver_here(), reason="this host has an NVIDIA driver")
def test_gpus_explicit_vendor_unavailable_is_a_usage_error(capsys) -> None:
    assert main(["gpus", "--backend", "nvidia"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "mudpuppy-monitor: GPU backend unavailable: nvidia: NVML library not found (no NVIDIA driver)\n"
    )


def test_gpus_fake_json(capsys) -> None:
    assert main(["gpus", "--backend", "fake", "--fake-devices", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["backend"], doc["simulated"], doc["name"]) == ("fake", True, "fake (simulated)")
    assert [d["index"] for d in doc["devices"]] == [0, 1, 2]
    assert all(d["simulated"] for d in doc["devices"])
    assert doc["devices"][1]["fan_pct"] is None
    assert doc["devices"][0]["mem_total_bytes"] == 85_899_345_920


def test_gpus_fake_table_is_labelled_simulated(capsys) -> None:
    assert main(["gpus", "--backend", "fake", "--fake-devices", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "SIMULATED GPUs (fake backend): these are not real devices"
    assert out[1] == "backend: fake (simulated): 1 simulated device(s), not real hardware"
    assert "Simulated GPU 80GB (fake)" in out[3]


@pytest.mark.parametrize("n", ["-1", "65"])
def test_bad_fake_device_count(n: str, capsys) -> None:
    assert main(["gpus", "--backend", "fake", "--fake-devices", n]) == 2
    assert "--fake-devices must be between 0 and 64" in capsys.readouterr().err


def test_bad_backend_name_is_rejected_by_argparse(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["gpus", "--backend", "cuda"])
    assert exc.value.code == 2


def test_table_for_an_nvidia_sample() -> None:
    dev = FakeNvDevice(fans=None, compute=[(4242, 10_737_418_240), (4243, None)])
    backend = NvidiaBackend(module=make_fake_pynvml([dev]), clock=lambda: 5.0)
    backend.reason = "nvidia, 1 device(s): NVIDIA H100 80GB HBM3"
    lines = format_table(backend, backend.sample()).splitlines()
    assert lines[0] == "backend: nvidia: nvidia, 1 device(s): NVIDIA H100 80GB HBM3"
    assert lines[2].startswith("  0  NVIDIA H100 80GB HBM3")
    assert lines[2].endswith(
        "87%   41%          40.0/79.6   64C      312.5/700    1980    2619     -"
    )
    assert lines[3] == "     uuid GPU-11111111-2222-3333-4444-555555555555"
    assert lines[4] == "     pid 4242     10.00 GiB"
    assert lines[5] == "     pid 4243     ?"
    doc = to_json(backend, backend.sample())
    assert doc["devices"][0]["power_w"] == 312.456


def test_gpus_as_a_real_subprocess() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mudpuppy_monitor", "gpus", "--backend", "fake", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["devices"]) == 2
