"""The peak FLOPS table: names as NVML / AMD SMI report them, dense figures, no guesses."""

from __future__ import annotations

import pytest

from mudpuppy_monitor.gpu.peaks import known_devices, match_device, peak_flops


@pytest.mark.parametrize(
    ("name", "key", "bf16_tflops"),
    [
        # NVML names (nvmlDeviceGetName), with and without the "NVIDIA " older drivers leave out
        ("NVIDIA A100-SXM4-40GB", "A100", 312.0),
        ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
        ("NVIDIA A100-PCIE-40GB", "A100", 312.0),
        ("NVIDIA A100 80GB PCIe", "A100", 312.0),
        ("A100-SXM4-40GB", "A100", 312.0),
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.5),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756.5),
        ("NVIDIA H100 NVL", "H100 NVL", 835.5),
        ("NVIDIA H200", "H200", 989.5),
        ("NVIDIA H200 NVL", "H200 NVL", 835.5),
        ("NVIDIA L4", "L4", 121.0),
        ("NVIDIA L40", "L40", 181.05),
        ("NVIDIA L40S", "L40S", 362.05),
        ("NVIDIA A10", "A10", 125.0),
        ("NVIDIA A40", "A40", 149.7),
        ("NVIDIA GeForce RTX 3090", "RTX 3090", 71.0),
        ("NVIDIA GeForce RTX 4090", "RTX 4090", 165.2),
        ("NVIDIA RTX A6000", "RTX A6000", 154.8),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada", 364.25),
        # AMD SMI market names (amdsmi_get_gpu_asic_info()["market_name"])
        ("AMD Instinct MI300X", "MI300X", 1307.4),
        ("AMD Instinct MI325X", "MI325X", 1307.4),
        ("AMD Instinct MI300A", "MI300A", 980.6),
        ("AMD Instinct MI250X", "MI250X (one GCD)", 191.5),
        ("AMD Instinct MI250", "MI250 (one GCD)", 181.05),
        ("AMD Instinct MI210", "MI210", 181.0),
        ("AMD Instinct MI100", "MI100", 92.3),
        ("  nvidia   h100-80gb-hbm3 ", "H100 SXM", 989.5),  # spacing, case, punctuation
    ],
)
def test_reported_names_find_their_dense_bf16_peak(name: str, key: str, bf16_tflops: float) -> None:
    peak = peak_flops(name, "bf16")
    assert peak is not None
    assert (peak.device, peak.dtype, peak.flops) == (key, "bf16", bf16_tflops * 1e12)
    assert peak.source.startswith("https://")


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA A10G",  # no vendor datasheet publishes its tensor peak
        "NVIDIA GeForce RTX 3090 Ti",  # a different part from the 3090
        "NVIDIA GeForce RTX 4090 D",
        "NVIDIA GeForce RTX 4090 Laptop GPU",
        "Quadro RTX 6000",  # Turing, not the Ada RTX 6000
        "NVIDIA A100-SXM4-40GB MIG 1g.5gb",  # a slice of a GPU
        "NVIDIA H100",  # which H100: SXM, PCIe or NVL?
        "AMD Instinct MI250X / MI250",  # either part: the peaks differ
        "AMD Instinct MI300X VF",
        "Tesla V100-SXM3-32GB",
        "NVIDIA GH200 480GB",
        "Simulated GPU 80GB (fake)",
        "",
        "GPU",
    ],
)
def test_unknown_or_ambiguous_devices_have_no_peak(name: str) -> None:
    assert match_device(name) is None
    assert peak_flops(name) is None


def test_parts_without_bf16_tensor_cores_have_only_an_fp16_peak() -> None:
    assert peak_flops("Tesla T4", "bf16") is None
    t4 = peak_flops("Tesla T4", "fp16")
    assert t4 is not None and t4.flops == 65e12
    v100 = peak_flops("Tesla V100-SXM2-32GB", "float16")
    assert v100 is not None and (v100.device, v100.flops) == ("V100 SXM2", 125e12)
    v100 = peak_flops("Tesla V100-PCIE-16GB", "half")
    assert v100 is not None and (v100.device, v100.flops) == ("V100 PCIe", 112e12)
    v100s = peak_flops("Tesla V100S-PCIE-32GB", "fp16")
    assert v100s is not None and (v100s.device, v100s.flops) == ("V100S PCIe", 130e12)
    mi100 = peak_flops("AMD Instinct MI100", "fp16")
    assert mi100 is not None and mi100.flops == 184.6e12


def test_dtype_spellings() -> None:
    for dtype in ("bf16", "bfloat16", "torch.bfloat16", " BF16 "):
        peak = peak_flops("NVIDIA L4", dtype)
        assert peak is not None and peak.dtype == "bf16"
    for dtype in ("fp32", "float32", "tf32", "fp8"):
        assert peak_flops("NVIDIA L4", dtype) is None  # no column for it: never a guess
    with pytest.raises(ValueError, match="unknown dtype"):
        peak_flops("NVIDIA L4", "bf61")


def test_names_that_are_not_strings_match_nothing() -> None:
    for name in (None, 42, b"NVIDIA L4"):
        assert match_device(name) is None  # type: ignore[arg-type]


def test_every_name_matches_at_most_one_entry() -> None:
    # the keys themselves are names a user might pass: each finds exactly its own entry
    for entry in known_devices():
        canonical = entry.key.replace("(one GCD)", "")
        found = match_device(canonical)
        if entry.any_of:
            found = match_device(f"{canonical} {entry.any_of[0]}")
        assert found is entry, entry.key
        assert entry.bf16_tflops or entry.fp16_tflops
        assert entry.source.startswith(("https://www.nvidia.com/", "https://images.nvidia.com/",
                                        "https://www.amd.com/"))  # fmt: skip
