"""`make gpu-check` is run by someone else on a GPU machine: its comparison and its failure
paths are tested here with the fake bindings and canned vendor-tool output."""

from __future__ import annotations

import os

import pytest

from mudpuppy_monitor.gpu import check
from mudpuppy_monitor.gpu.records import GpuProcess, GpuSample
from tests.fake_amdsmi import FakeAmdDevice, make_fake_amdsmi
from tests.fake_pynvml import FakeNvDevice, make_fake_pynvml, no_nvidia_driver_here

HEADER = (
    "index, name, uuid, utilization.gpu [%], memory.used [MiB], memory.total [MiB], "
    "temperature.gpu, power.draw [W], power.limit [W], clocks.current.sm [MHz], "
    "clocks.current.memory [MHz], fan.speed [%]"
)
ROW = (
    "0, NVIDIA H100 80GB HBM3, GPU-11111111-2222-3333-4444-555555555555, 87 %, 40960 MiB, "
    "81559 MiB, 64, 312.45 W, 700.00 W, 1980 MHz, 2619 MHz, 52 %"
)
APPS = "pid, used_memory [MiB], gpu_uuid\n4242, 10240 MiB, GPU-11111111-2222-3333-4444-555555555555"
UUID = "GPU-11111111-2222-3333-4444-555555555555"
# FakeNvDevice's counter: 5,321,987,654 mJ
ENERGY = f"uuid, energy.consumption [mJ]\n{UUID}, 5321987654 mJ"


def fake_run(csv: str, energy: tuple[int, str] = (0, ENERGY)):
    calls: list[list[str]] = []

    def run(cmd):
        calls.append(list(cmd))
        if cmd == check.NVIDIA_SMI:
            return 0, csv
        if cmd == check.NVIDIA_SMI_APPS:
            return 0, APPS
        if cmd == check.NVIDIA_SMI_ENERGY:
            return energy
        return 0, "amd-smi output line\n" * 100

    return run, calls


def energy_check(capsys, energy: tuple[int, str], device: FakeNvDevice | None = None):
    run, _ = fake_run(f"{HEADER}\n{ROW}", energy)
    rc = check.main(
        ["--no-process-check", "--sampler-seconds", "0.3"],
        nvidia_module=make_fake_pynvml([device or FakeNvDevice()]),
        amd_module=no_amd(),
        run=run,
        which=lambda n: n,
    )
    return rc, capsys.readouterr().out


def no_amd():
    return make_fake_amdsmi(init_error=4)


@pytest.mark.skipif(not no_nvidia_driver_here(), reason="this host has an NVIDIA driver")
def test_no_gpu_exits_0_with_a_clear_message(capsys) -> None:
    assert check.main([]) == 0
    out = capsys.readouterr().out
    assert "not available: nvidia: NVML library not found (no NVIDIA driver)" in out
    assert "No GPU found on this host: nothing to check" in out


def test_matching_nvidia_smi_passes(capsys) -> None:
    run, calls = fake_run(f"{HEADER}\n{ROW}")
    nv = make_fake_pynvml([FakeNvDevice(compute=[(4242, 10_737_418_240)])])
    rc = check.main(
        ["--no-process-check", "--sampler-seconds", "0.3"],
        nvidia_module=nv,
        amd_module=no_amd(),
        run=run,
        which=lambda n: n,
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert calls == [check.NVIDIA_SMI, check.NVIDIA_SMI_APPS, check.NVIDIA_SMI_ENERGY]
    assert "OK: nvidia sampled and matched the vendor tool" in out
    assert "energy counter (first sample): GPU 0 5321987.654 J" in out
    assert (
        "GPU 0 energy J      before=      5321987.65  after=      5321987.65"
        "  smi=     5321987.654  within" in out
    )
    assert "GPU 0 mem total MiB  ours=    81559.00  smi=     81559 MiB  diff +0.00" in out
    assert "GPU 0 power W        ours=      312.46  smi=      312.45 W  diff +0.01" in out
    assert "clean stop True" in out
    assert nv.calls["nvmlShutdown"] == nv.calls["nvmlInit"]  # left closed


def test_wrong_total_memory_fails(capsys) -> None:
    run, _ = fake_run(f"{HEADER}\n{ROW.replace('81559 MiB', '81000 MiB')}")
    nv = make_fake_pynvml()
    rc = check.main(
        ["--no-process-check", "--sampler-seconds", "0.3"],
        nvidia_module=nv,
        amd_module=no_amd(),
        run=run,
        which=lambda n: n,
    )
    out = capsys.readouterr().out
    assert rc == 1
    assert "GPU 0 mem total MiB: ours 81559.00 vs nvidia-smi 81000.0" in out


def test_a_field_only_one_side_has_fails(capsys) -> None:
    run, _ = fake_run(f"{HEADER}\n{ROW}")  # nvidia-smi shows a fan
    nv = make_fake_pynvml([FakeNvDevice(fans=None)])
    rc = check.main(
        ["--no-process-check", "--sampler-seconds", "0.3"],
        nvidia_module=nv,
        amd_module=no_amd(),
        run=run,
        which=lambda n: n,
    )
    out = capsys.readouterr().out
    assert rc == 1
    assert "GPU 0 fan %: ours None vs nvidia-smi '52 %'" in out


def test_not_supported_on_both_sides_passes(capsys) -> None:
    row = ROW.replace("52 %", "[N/A]").replace("312.45 W", "[N/A]").replace("700.00 W", "[N/A]")
    run, _ = fake_run(f"{HEADER}\n{row}")
    nv = make_fake_pynvml([FakeNvDevice(fans=None, power_supported=False)])
    rc = check.main(
        ["--no-process-check", "--sampler-seconds", "0.3"],
        nvidia_module=nv,
        amd_module=no_amd(),
        run=run,
        which=lambda n: n,
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (
        "GPU 0 unsupported (asked once, then skipped): ['fan', 'fan_v2', 'power', 'power_limit']"
        in out
    )


def test_unknown_uuid_fails(capsys) -> None:
    run, _ = fake_run(f"{HEADER}\n{ROW.replace('GPU-1111', 'GPU-9999')}")
    rc = check.main(
        ["--no-process-check", "--sampler-seconds", "0.3"],
        nvidia_module=make_fake_pynvml(),
        amd_module=no_amd(),
        run=run,
        which=lambda n: n,
    )
    assert rc == 1
    assert "not in nvidia-smi output" in capsys.readouterr().out


def test_without_nvidia_smi_or_when_it_times_out(capsys) -> None:
    nv = make_fake_pynvml()
    assert (
        check.main(
            ["--no-process-check", "--sampler-seconds", "0.3"],
            nvidia_module=nv,
            amd_module=no_amd(),
            which=lambda n: None,
        )
        == 0
    )
    assert "(nvidia-smi not found: no side-by-side comparison)" in capsys.readouterr().out
    rc = check.main(
        ["--no-process-check", "--sampler-seconds", "0.3"],
        nvidia_module=make_fake_pynvml(),
        amd_module=no_amd(),
        run=lambda cmd: (124, "(timed out after 15 s)"),
        which=lambda n: n,
    )
    assert rc == 0
    assert "(timed out after 15 s)" in capsys.readouterr().out


def test_amd_with_amd_smi_output_trimmed(capsys) -> None:
    run, calls = fake_run("")
    rc = check.main(
        ["--sampler-seconds", "0.3"],
        nvidia_module=make_fake_pynvml(init_error="LIBRARY_NOT_FOUND"),
        amd_module=make_fake_amdsmi([FakeAmdDevice()]),
        run=run,
        which=lambda n: n,
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert calls == [["amd-smi", "list"], ["amd-smi", "metric"], check.AMD_SMI_ENERGY]
    # 123,456,789,012 counts x 15.3 uJ, printed before and after amd-smi's own energy output
    assert out.count("ours: GPU 0 1888888.872 J") == 2
    assert "... (20 more lines)" in out
    assert "AMD Instinct MI300X" in out
    assert "OK: amd sampled" in out


def test_an_energy_reading_between_ours_before_and_after_passes(capsys) -> None:
    # the counter grows 2 J per read; the check has read it twice (the two timed samples)
    # before it reads "before" (5321991.654) and "after" (5321993.654) around nvidia-smi,
    # whose reading in between is in joules
    device = FakeNvDevice(energy_step_mj=2_000)
    smi = f"uuid, energy.consumption [J]\n{UUID}, 5321992.654 J"
    rc, out = energy_check(capsys, (0, smi), device)
    assert rc == 0, out
    assert "before=      5321991.65  after=      5321993.65  smi=     5321992.654  within" in out
    smi = f"uuid, energy.consumption [J]\n{UUID}, 5321999.654 J"  # past after + 2 J of slack
    rc, out = energy_check(capsys, (0, smi), FakeNvDevice(energy_step_mj=2_000))
    assert rc == 1 and "outside ours 5321991.654..5321993.654 J" in out


def test_an_energy_reading_outside_ours_fails(capsys) -> None:
    rc, out = energy_check(capsys, (0, ENERGY.replace("5321987654", "5321887654")))
    assert rc == 1
    assert "GPU 0 energy: nvidia-smi 5321887.654 J outside ours 5321987.654..5321987.654 J" in out


def test_an_nvidia_smi_without_the_energy_field_is_reported_not_failed(capsys) -> None:
    refused = (2, 'Field "energy.consumption" is not a valid field to query.')
    rc, out = energy_check(capsys, refused)
    assert rc == 0, out
    assert "nvidia-smi gives no energy field here (exit 2): Field" in out


def test_energy_not_supported_on_both_sides_passes_and_on_one_fails(capsys) -> None:
    na = f"uuid, energy.consumption [mJ]\n{UUID}, [N/A]"
    rc, out = energy_check(capsys, (0, na), FakeNvDevice(energy_mj=None))
    assert rc == 0, out
    assert "smi=None  both n/a" in out
    rc, out = energy_check(capsys, (0, na))
    assert rc == 1
    assert "GPU 0 energy: ours 5321987.654 vs nvidia-smi None" in out


def test_an_energy_unit_not_known_here_is_shown_not_compared(capsys) -> None:
    rc, out = energy_check(capsys, (0, ENERGY.replace("[mJ]", "[erg]")))
    assert rc == 0, out
    assert "(unit not known here: not compared)" in out


def test_parse_nvidia_smi_ignores_garbage() -> None:
    rows = check.parse_nvidia_smi(f"{HEADER}\n{ROW}\nNVIDIA-SMI has failed\n,,,\n")
    assert list(rows) == ["GPU-11111111-2222-3333-4444-555555555555"]
    assert check._smi_number("[Not Supported]") is None
    assert check._smi_number("312.45 W") == 312.45
    assert check._smi_number("N/A") is None


class ChildBackend:
    """Reports the children of this test process as GPU processes."""

    kind = "nvidia"
    name = "nvidia"
    simulated = False
    reason = ""

    def device_count(self) -> int:
        return 1

    def sample(self) -> list[GpuSample]:
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        stat = f.read()
                except OSError:
                    continue
                if int(stat[stat.rindex(b")") + 1 :].split()[1]) == os.getpid():
                    pids.append(int(entry))
        return [
            GpuSample(
                0, "g", "GPU-abc", 0.0, processes=tuple(GpuProcess(p, 268435456) for p in pids)
            )
        ]

    def close(self) -> None:
        pass


def test_process_attribution_check_finds_the_child(monkeypatch, capsys) -> None:
    monkeypatch.setattr(check, "_CHILD", "import sys; print('ready', flush=True); sys.stdin.read()")
    assert check.check_process_attribution(ChildBackend()) == []
    assert (
        "using 256 MiB; attributed: [{'run_id': 'gpu-check', 'reason': 'pid'"
        in capsys.readouterr().out
    )


def test_process_attribution_check_skips_without_cuda(monkeypatch, capsys) -> None:
    monkeypatch.setattr(check, "_CHILD", "print('nocuda', flush=True)")
    assert check.check_process_attribution(ChildBackend()) == []
    assert "skipped: torch with CUDA not usable here (nocuda)" in capsys.readouterr().out


def test_process_attribution_check_times_out_on_a_silent_child(monkeypatch, capsys) -> None:
    monkeypatch.setattr(check, "_CHILD", "import time; time.sleep(30)")
    assert check.check_process_attribution(ChildBackend(), timeout_s=0.3) == []
    assert "skipped: torch with CUDA not usable here (no answer)" in capsys.readouterr().out


def test_process_attribution_check_warns_when_pids_differ(monkeypatch, capsys) -> None:
    class OtherPids(ChildBackend):
        def sample(self) -> list[GpuSample]:
            return [GpuSample(0, "g", "GPU-abc", 0.0, processes=(GpuProcess(1, 1),))]

    monkeypatch.setattr(check, "_CHILD", "import sys; print('ready', flush=True); sys.stdin.read()")
    assert check.check_process_attribution(OtherPids(), retries=1) == []
    out = capsys.readouterr().out
    assert "WARNING: child pid" in out
    assert "listed pids: [1]" in out


def test_power_limit_difference_is_shown_not_failed(capsys) -> None:
    run, _ = fake_run(f"{HEADER}\n{ROW.replace('700.00 W', '650.00 W')}")
    rc = check.main(
        ["--no-process-check", "--sampler-seconds", "0.3"],
        nvidia_module=make_fake_pynvml(),
        amd_module=no_amd(),
        run=run,
        which=lambda n: n,
    )
    assert rc == 0
    assert "diff +50.00 (software vs enforced limit?)" in capsys.readouterr().out
