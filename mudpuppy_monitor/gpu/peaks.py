"""Dense bf16/fp16 tensor peaks of common accelerators, by the name NVML / AMD SMI report.

Every entry carries the vendor page it comes from; docs/efficiency.md lists them with how each
figure was checked. The figures are *dense* (no 2:4 structured sparsity; vendor tables mark the
sparse ones with an asterisk and print them twice as large) and per *device as the management
library enumerates it*: an MI250X is two devices (two GCDs), each with half the package's peak.

Matching is by whole tokens of the lower-cased name without punctuation and vendor words, so
"NVIDIA A100-SXM4-80GB" and "A100 80GB PCIe" both find the A100, while "GeForce RTX 4090 D",
"RTX 4090 Laptop GPU", "A100 ... MIG 1g.5gb" or "MI250X / MI250" find nothing: a token an entry
does not know means a different part, and an unknown device has no peak (never a guess).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PeakEntry", "PeakFlops", "known_devices", "match_device", "peak_flops"]

# dtype spellings accepted by peak_flops; those mapped to None have no column in the table
_DTYPES: dict[str, str | None] = {
    "bf16": "bf16",
    "bfloat16": "bf16",
    "torch.bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "torch.float16": "fp16",
    "fp32": None,
    "float32": None,
    "torch.float32": None,
    "tf32": None,
    "fp8": None,
}
# words that say who made or sells the part, not which part it is
_VENDOR_WORDS = frozenset({"nvidia", "amd", "tesla", "geforce", "quadro", "instinct", "radeon"})
# words that do not change the part: form factors and memory types (sizes match `_SIZE`)
_NEUTRAL = frozenset({"sxm", "sxm2", "sxm4", "sxm5", "pcie", "oam", "hbm2", "hbm2e", "hbm3"})
_SIZE = re.compile(r"\d+gb")

_NV_A100 = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
_NV_H100 = "https://www.nvidia.com/en-us/data-center/h100/"
_NV_H200 = "https://www.nvidia.com/en-us/data-center/h200/"
_NV_L40S = "https://www.nvidia.com/en-us/data-center/l40s/"
_NV_L40 = "https://www.nvidia.com/en-us/data-center/l40/"
_NV_L4 = "https://www.nvidia.com/en-us/data-center/l4/"
_NV_A10 = "https://www.nvidia.com/en-us/data-center/products/a10-gpu/"
_NV_A40 = "https://www.nvidia.com/en-us/data-center/a40/"
_NV_T4 = "https://www.nvidia.com/en-us/data-center/tesla-t4/"
_NV_V100 = "https://www.nvidia.com/en-us/data-center/v100/"
_NV_GA102 = (
    "https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf"
)
_NV_ADA = "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"
_NV_RTX6000ADA = "https://www.nvidia.com/en-us/design-visualization/rtx-6000/"
_AMD_MI300X = "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html"
_AMD_MI325X = "https://www.amd.com/en/products/accelerators/instinct/mi300/mi325x.html"
_AMD_MI300A = "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300a.html"
_AMD_MI250X = "https://www.amd.com/en/products/accelerators/instinct/mi200/mi250x.html"
_AMD_MI250 = "https://www.amd.com/en/products/accelerators/instinct/mi200/mi250.html"
_AMD_MI210 = "https://www.amd.com/en/products/accelerators/instinct/mi200/mi210.html"
_AMD_MI100 = "https://www.amd.com/en/products/accelerators/instinct/mi100.html"


@dataclass(frozen=True, slots=True)
class PeakEntry:
    """One part. A name matches when it has every `model` token, at least one `any_of` token (if
    given), and nothing else but sizes, neutral words and this entry's `extras`."""

    key: str  # canonical name, e.g. "H100 SXM"
    vendor: str  # "nvidia" | "amd"
    model: tuple[str, ...]
    bf16_tflops: float | None  # dense, per device; None: no bf16 tensor path
    fp16_tflops: float | None
    source: str  # the vendor page
    any_of: tuple[str, ...] = ()
    extras: frozenset[str] = frozenset()
    note: str = ""


@dataclass(frozen=True, slots=True)
class PeakFlops:
    device: str  # the entry's key
    dtype: str  # "bf16" | "fp16"
    flops: float  # per second, dense, one device
    source: str
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "dtype": self.dtype,
            "flops": self.flops,
            "source": self.source,
            "note": self.note,
        }


_ENTRIES: tuple[PeakEntry, ...] = (
    # NVIDIA data centre: Ampere
    PeakEntry("A100", "nvidia", ("a100",), 312.0, 312.0, _NV_A100,
              note="SXM4 and PCIe, 40 and 80 GB alike"),
    PeakEntry("A40", "nvidia", ("a40",), 149.7, 149.7, _NV_A40,
              note="datasheet: BF16/FP16 with FP32 accumulate"),
    PeakEntry("A10", "nvidia", ("a10",), 125.0, 125.0, _NV_A10),
    # NVIDIA data centre: Hopper
    PeakEntry("H100 SXM", "nvidia", ("h100",), 989.5, 989.5, _NV_H100,
              any_of=("hbm3", "sxm", "sxm5"),
              note="datasheet 1,979 with sparsity"),
    PeakEntry("H100 PCIe", "nvidia", ("h100", "pcie"), 756.5, 756.5, _NV_H100,
              note="datasheet 1,513 with sparsity"),
    PeakEntry("H100 NVL", "nvidia", ("h100", "nvl"), 835.5, 835.5, _NV_H100,
              note="datasheet 1,671 with sparsity, per GPU"),
    PeakEntry("H200", "nvidia", ("h200",), 989.5, 989.5, _NV_H200,
              extras=frozenset({"hbm3e"}), note="H200 SXM; datasheet 1,979 with sparsity"),
    PeakEntry("H200 NVL", "nvidia", ("h200", "nvl"), 835.5, 835.5, _NV_H200,
              extras=frozenset({"hbm3e"}), note="datasheet 1,671 with sparsity"),
    # NVIDIA data centre: Ada, Turing, Volta
    PeakEntry("L4", "nvidia", ("l4",), 121.0, 121.0, _NV_L4, note="datasheet 242 with sparsity"),
    PeakEntry("L40", "nvidia", ("l40",), 181.05, 181.05, _NV_L40,
              note="datasheet 362.1 with sparsity"),
    PeakEntry("L40S", "nvidia", ("l40s",), 362.05, 362.05, _NV_L40S,
              note="datasheet 733 with sparsity"),
    PeakEntry("T4", "nvidia", ("t4",), None, 65.0, _NV_T4,
              note="Turing: fp16 tensor cores only (mixed precision FP16/FP32), no bf16"),
    PeakEntry("V100 SXM2", "nvidia", ("v100", "sxm2"), None, 125.0, _NV_V100,
              note="Volta: fp16 tensor cores only"),
    PeakEntry("V100 PCIe", "nvidia", ("v100", "pcie"), None, 112.0, _NV_V100,
              note="Volta: fp16 tensor cores only"),
    PeakEntry("V100S PCIe", "nvidia", ("v100s", "pcie"), None, 130.0, _NV_V100,
              note="Volta: fp16 tensor cores only"),
    # NVIDIA workstation and GeForce: FP32 accumulate (what mixed-precision training uses);
    # GeForce cards run it at half the FP16-accumulate rate
    PeakEntry("RTX 3090", "nvidia", ("rtx", "3090"), 71.0, 71.0, _NV_GA102,
              note="GA102 whitepaper: FP16/BF16 tensor with FP32 accumulate, 142 with sparsity"),
    PeakEntry("RTX 4090", "nvidia", ("rtx", "4090"), 165.2, 165.2, _NV_ADA,
              note="Ada whitepaper: FP16/BF16 tensor with FP32 accumulate, 330.4 with sparsity"),
    PeakEntry("RTX A6000", "nvidia", ("rtx", "a6000"), 154.8, 154.8, _NV_GA102,
              note="GA102 whitepaper appendix: FP16/BF16 tensor with FP32 accumulate, 309.7 with sparsity"),
    PeakEntry("RTX 6000 Ada", "nvidia", ("rtx", "6000", "ada"), 364.25, 364.25, _NV_RTX6000ADA,
              extras=frozenset({"generation"}),
              note="datasheet prints 1,457 FP8 with sparsity; dense FP16/BF16 is a quarter"),
    # AMD Instinct (no structured sparsity on CDNA2; CDNA3 pages print both, dense first)
    PeakEntry("MI300X", "amd", ("mi300x",), 1307.4, 1307.4, _AMD_MI300X,
              note="whole chip (SPX mode); a CPX partition has an eighth"),
    PeakEntry("MI325X", "amd", ("mi325x",), 1307.4, 1307.4, _AMD_MI325X,
              note="whole chip (SPX mode)"),
    PeakEntry("MI300A", "amd", ("mi300a",), 980.6, 980.6, _AMD_MI300A),
    PeakEntry("MI250X (one GCD)", "amd", ("mi250x",), 191.5, 191.5, _AMD_MI250X,
              note="383.0 per package of two GCDs; each GCD is a device"),
    PeakEntry("MI250 (one GCD)", "amd", ("mi250",), 181.05, 181.05, _AMD_MI250,
              note="362.1 per package of two GCDs; each GCD is a device"),
    PeakEntry("MI210", "amd", ("mi210",), 181.0, 181.0, _AMD_MI210),
    PeakEntry("MI100", "amd", ("mi100",), 92.3, 184.6, _AMD_MI100,
              note="CDNA1: bf16 at half the fp16 rate"),
)  # fmt: skip


def known_devices() -> tuple[PeakEntry, ...]:
    return _ENTRIES


def _tokens(name: str) -> list[str]:
    words = re.split(r"[^a-z0-9]+", name.lower())
    return [w for w in words if w and w not in _VENDOR_WORDS]


def _matches(entry: PeakEntry, tokens: list[str]) -> bool:
    present = set(tokens)
    if not set(entry.model) <= present:
        return False
    if entry.any_of and not present & set(entry.any_of):
        return False
    rest = present - set(entry.model)
    return all(t in _NEUTRAL or t in entry.extras or _SIZE.fullmatch(t) for t in rest)


def match_device(name: str) -> PeakEntry | None:
    """The table entry for a device name as NVML/AMD SMI report it, or None (unknown, or more
    than one entry fits)."""
    if not isinstance(name, str):
        return None
    tokens = _tokens(name)
    if not tokens:
        return None
    found = [e for e in _ENTRIES if _matches(e, tokens)]
    return found[0] if len(found) == 1 else None


def peak_flops(name: str, dtype: str = "bf16") -> PeakFlops | None:
    """The dense tensor peak of one device for `dtype` ("bf16"/"fp16" and their spellings), or
    None: unknown device, a dtype the table has no column for (fp32, tf32, fp8), or a part
    without that tensor path (bf16 on a T4 or V100). An unrecognised dtype raises ValueError."""
    key = dtype.strip().lower() if isinstance(dtype, str) else None
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected bf16 or fp16")
    column = _DTYPES[key]
    entry = match_device(name)
    if entry is None or column is None:
        return None
    tflops = entry.bf16_tflops if column == "bf16" else entry.fp16_tflops
    if tflops is None:
        return None
    return PeakFlops(entry.key, column, tflops * 1e12, entry.source, entry.note)
