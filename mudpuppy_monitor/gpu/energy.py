"""Energy counter readings of the vendor libraries, in joules. Pure conversions.

- NVML: `nvmlDeviceGetTotalEnergyConsumption(handle)` returns the energy the GPU used since the
  driver was last loaded, as an unsigned 64-bit count of millijoules (Volta and newer).
- AMD SMI: `amdsmi_get_energy_count(handle)` returns a dict: the accumulated counter
  (`energy_accumulator`; named `power` in bindings before amdsmi 6.2.1, listed as deprecated in
  the 6.4 reference), `counter_resolution` (microjoules per count, a float) and `timestamp` (ns).
  Energy in microjoules = counter x resolution.

docs/efficiency.md records where these facts come from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["amd_energy_j", "nvml_energy_j"]

# what an unsigned 64-bit "not available" looks like when a binding passes it through
_U64_NOT_AVAILABLE = (1 << 64) - 1


def nvml_energy_j(millijoules: Any) -> float | None:
    """An NVML total-energy reading (mJ) in joules; None for anything that is not a count."""
    mj = _number(millijoules)
    return mj / 1e3 if mj is not None else None


def amd_energy_j(result: Any) -> float | None:
    """An `amdsmi_get_energy_count` result in joules, for either field name; None when the
    counter or its resolution is missing, "N/A" or not a number."""
    if not isinstance(result, Mapping):
        return None
    counter = _number(result.get("energy_accumulator"))
    if counter is None:
        counter = _number(result.get("power"))
    resolution_uj = _number(result.get("counter_resolution"))
    if counter is None or resolution_uj is None or resolution_uj <= 0:
        return None
    return counter * resolution_uj / 1e6


def _number(v: Any) -> float | None:
    if isinstance(v, Mapping):  # {"value": x, "unit": u} in some binding versions
        v = v.get("value")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v == _U64_NOT_AVAILABLE:
        return None
    x = float(v)
    return x if math.isfinite(x) and x >= 0 else None
