"""`make gpu-check`: run the real backends on this host and set them beside the vendor tools.

For each vendor library that works here: one sample as a table, the fields the devices do not
support, what a sample costs, `nvidia-smi --query-gpu=...` (or `amd-smi`) output with a
field-by-field comparison, a short run of the sampler thread with a clean stop, and (NVIDIA,
when torch with CUDA is importable) a child process that allocates GPU memory and must be found
and attributed by pid. No GPU: says so and exits 0. Every external command has a timeout, so the
whole check ends in well under a minute.
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from mudpuppy_monitor.gpu.attribution import attribute
from mudpuppy_monitor.gpu.backends import open_backend
from mudpuppy_monitor.gpu.base import GpuBackend
from mudpuppy_monitor.gpu.cli import format_table
from mudpuppy_monitor.gpu.records import GpuSample
from mudpuppy_monitor.gpu.sampler import GpuSampler

MIB = 1024 * 1024
SMI_FIELDS = (
    "index,name,uuid,utilization.gpu,memory.used,memory.total,temperature.gpu,"
    "power.draw,power.limit,clocks.sm,clocks.mem,fan.speed"
)
NVIDIA_SMI = ["nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv"]
NVIDIA_SMI_APPS = ["nvidia-smi", "--query-compute-apps=pid,used_memory,gpu_uuid", "--format=csv"]
AMD_SMI = (["amd-smi", "list"], ["amd-smi", "metric"])
COMMAND_TIMEOUT_S = 15.0

# the child for the attribution check: allocate 256 MiB on GPU 0, say so, wait for stdin
_CHILD = (
    "import sys, torch\n"
    "if not torch.cuda.is_available(): print('nocuda', flush=True); sys.exit(0)\n"
    "x = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device='cuda:0')\n"
    "torch.cuda.synchronize(); print('ready', flush=True); sys.stdin.read()\n"
)

RunCommand = Callable[[Sequence[str]], "tuple[int, str]"]


def run_command(cmd: Sequence[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return 124, f"(timed out after {COMMAND_TIMEOUT_S:.0f} s)"
    except OSError as exc:
        return 127, f"({exc})"
    return done.returncode, (done.stdout + done.stderr).rstrip()


def _smi_number(text: str) -> float | None:
    text = text.strip()
    if not text or text.startswith("[") or text.upper().startswith("N/A"):
        return None  # "[N/A]", "[Not Supported]"
    try:
        return float(text.split()[0])
    except ValueError:
        return None


def parse_nvidia_smi(csv_text: str) -> dict[str, list[str]]:
    """Rows of `nvidia-smi --query-gpu=SMI_FIELDS --format=csv`, keyed by UUID."""
    rows: dict[str, list[str]] = {}
    for line in csv_text.splitlines()[1:]:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == len(SMI_FIELDS.split(",")):
            rows[cells[2]] = cells
    return rows


def compare_nvidia(samples: Sequence[GpuSample], csv_text: str) -> tuple[list[str], list[str]]:
    """(report lines, failures). Failures are differences no timing can explain: name, total
    memory, power limit, and a field one side has and the other does not."""
    rows = parse_nvidia_smi(csv_text)
    lines: list[str] = []
    failures: list[str] = []
    for s in samples:
        row = rows.get(s.uuid)
        if row is None:
            failures.append(f"GPU {s.index}: uuid {s.uuid} not in nvidia-smi output")
            continue
        if row[1] != s.name:
            failures.append(f"GPU {s.index}: name {s.name!r} vs nvidia-smi {row[1]!r}")
        ours: list[tuple[str, float | None, int]] = [
            # (field, our value in nvidia-smi's unit, nvidia-smi column)
            ("util %", s.util_pct, 3),
            ("mem used MiB", None if s.mem_used_bytes is None else s.mem_used_bytes / MIB, 4),
            ("mem total MiB", None if s.mem_total_bytes is None else s.mem_total_bytes / MIB, 5),
            ("temperature C", s.temperature_c, 6),
            ("power W", s.power_w, 7),
            ("power limit W", s.power_limit_w, 8),
            ("sm clock MHz", s.sm_clock_mhz, 9),
            ("mem clock MHz", s.mem_clock_mhz, 10),
            ("fan %", s.fan_pct, 11),
        ]
        for label, mine, col in ours:
            theirs = _smi_number(row[col])
            if (mine is None) != (theirs is None):
                failures.append(f"GPU {s.index} {label}: ours {mine} vs nvidia-smi {row[col]!r}")
                status = "MISMATCH (presence)"
            elif mine is None or theirs is None:
                status = "both n/a"
            else:
                diff = mine - theirs
                status = f"diff {diff:+.2f}"
                if label == "mem total MiB" and abs(diff) > 1.0:
                    failures.append(
                        f"GPU {s.index} {label}: ours {mine:.2f} vs nvidia-smi {theirs}"
                    )
                    status += " MISMATCH"
                elif label == "power limit W" and abs(diff) > 1.0:
                    # nvidia-smi's power.limit is the software limit, ours the enforced one:
                    # they can legitimately differ, so this is shown, not failed
                    status += " (software vs enforced limit?)"
            lines.append(
                f"  GPU {s.index} {label:<14} ours={_fmt(mine):>12}  smi={row[col]:>14}  {status}"
            )
    return lines, failures


def _fmt(value: float | None) -> str:
    return "None" if value is None else f"{value:.2f}"


def _section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def check_backend(
    backend: GpuBackend,
    run: RunCommand,
    which: Callable[[str], str | None],
    sampler_s: float = 1.0,
) -> list[str]:
    failures: list[str] = []
    t0 = time.perf_counter()
    samples = backend.sample()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    backend.sample()
    second = time.perf_counter() - t0
    print(format_table(backend, samples))
    print(f"sample cost: first {first * 1e3:.1f} ms, second {second * 1e3:.1f} ms")
    reader = getattr(backend, "reader", None)
    if reader is not None:
        for s in samples:
            print(
                f"GPU {s.index} unsupported (asked once, then skipped): {reader.known_unsupported(s.index) or 'none'}"
            )
        print(f"field errors: {reader.errors} (last: {reader.last_error})")
        if reader.errors:
            failures.append(
                f"{backend.kind}: {reader.errors} field errors, last {reader.last_error}"
            )
    if not samples:
        failures.append(f"{backend.kind}: the library reports devices but the sample is empty")

    if backend.kind == "nvidia":
        if which("nvidia-smi"):
            _section("nvidia-smi " + " ".join(NVIDIA_SMI[1:]))
            rc, out = run(NVIDIA_SMI)
            print(out)
            _section("nvidia-smi " + " ".join(NVIDIA_SMI_APPS[1:]))
            print(run(NVIDIA_SMI_APPS)[1])
            if rc == 0:
                _section("ours vs nvidia-smi (moving values differ by timing)")
                lines, bad = compare_nvidia(samples, out)
                print("\n".join(lines))
                failures += bad
        else:
            print("(nvidia-smi not found: no side-by-side comparison)")
    elif backend.kind == "amd":
        if which("amd-smi"):
            for cmd in AMD_SMI:
                _section(" ".join(cmd))
                text = run(cmd)[1].splitlines()
                more = f"\n... ({len(text) - 80} more lines)" if len(text) > 80 else ""
                print("\n".join(text[:80]) + more)
        else:
            print("(amd-smi not found: no side-by-side output)")

    _section(f"{backend.kind}: sampler thread, 4 ticks in {sampler_s:g} s, then stop")
    sampler = GpuSampler(backend, interval_s=sampler_s / 4, history_s=10)
    sampler.start()
    time.sleep(sampler_s)
    stopped = sampler.stop()
    stats = sampler.stats()
    print(
        f"samples {stats.samples}, errors {stats.errors}, mean cost "
        f"{(stats.mean_cost_s or 0) * 1e3:.1f} ms, max {(stats.max_cost_s or 0) * 1e3:.1f} ms, "
        f"clean stop {stopped}, history per device {[len(sampler.history(i)) for i in sampler.indices()]}"
    )
    if not stopped or stats.samples < 3 or stats.errors:
        failures.append(f"{backend.kind}: sampler run not clean ({stats})")
    return failures


def check_process_attribution(
    backend: GpuBackend, timeout_s: float = 40.0, retries: int = 10
) -> list[str]:
    """Start a child that holds GPU memory; it must show up on a device and be attributed to a
    run whose pid it is. Skipped (no failure) where torch with CUDA is not importable."""
    _section("attribution: a child process holding 256 MiB on GPU 0")
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    except OSError as exc:
        print(f"skipped: {exc}")
        return []
    try:
        # wait for the child's one line without blocking past the timeout (CUDA init can hang)
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], timeout_s)
        line = child.stdout.readline().strip() if ready else ""
        if line != "ready":
            print(f"skipped: torch with CUDA not usable here ({line or 'no answer'})")
            return []
        found = None
        for _ in range(retries):  # the driver can take a moment to list a new context
            samples = backend.sample()
            found = next((s for s in samples if any(p.pid == child.pid for p in s.processes)), None)
            if found:
                break
            time.sleep(0.3)
        if found is None:
            # NVML lists host pids: inside a container (own pid namespace) ours differ, which
            # is an environment fact to report, not a defect of the sampler
            listed = sorted({p.pid for s in samples for p in s.processes})
            print(
                f"WARNING: child pid {child.pid} holds GPU memory but is on no device's process "
                f"list; listed pids: {listed} (a container's pid namespace? then attribution "
                "works by UUID only)"
            )
            return []
        proc = next(p for p in found.processes if p.pid == child.pid)
        used = "unknown" if proc.used_bytes is None else f"{proc.used_bytes / MIB:.0f} MiB"
        run = {"id": "gpu-check", "pid": child.pid, "gpus": [], "host": None}
        att = attribute(samples, [run])[found.index]
        print(
            f"child pid {child.pid} on GPU {found.index} using {used}; attributed: {[r.to_dict() for r in att.runs]}"
        )
        if att.run_ids != ("gpu-check",) or att.runs[0].reason != "pid":
            return [f"child on GPU {found.index} not attributed by pid: {att.to_dict()}"]
        by_uuid = attribute(samples, [{"id": "u", "pid": None, "gpus": [found.uuid[4:]]}])[
            found.index
        ]
        if by_uuid.run_ids != ("u",):
            return [f"torch-style uuid {found.uuid[4:]} did not match GPU {found.index}"]
        return []
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)


def main(
    argv: Sequence[str] | None = None,
    *,
    nvidia_module: Any = None,
    amd_module: Any = None,
    run: RunCommand = run_command,
    which: Callable[[str], str | None] = shutil.which,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m mudpuppy_monitor.gpu.check")
    parser.add_argument("--no-process-check", action="store_true", help="skip the torch child")
    parser.add_argument(
        "--sampler-seconds", type=float, default=1.0, help="how long to run the sampler thread"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"host {platform.node()}, python {platform.python_version()}, pid {os.getpid()}")
    failures: list[str] = []
    found = []
    for vendor in ("nvidia", "amd"):
        _section(vendor)
        backend = open_backend(vendor, nvidia_module=nvidia_module, amd_module=amd_module)
        if backend.kind == "none":
            print(f"not available: {backend.reason}")
            continue
        found.append(vendor)
        try:
            failures += check_backend(backend, run, which, args.sampler_seconds)
            if vendor == "nvidia" and not args.no_process_check:
                failures += check_process_attribution(backend)
        except Exception as exc:  # report, do not hide: a crash here is a finding
            failures.append(f"{vendor}: {type(exc).__name__}: {exc}")
        finally:
            backend.close()
    _section("result")
    elapsed = time.perf_counter() - started
    if not found:
        print(f"No GPU found on this host: nothing to check ({elapsed:.1f} s).")
        return 0
    if failures:
        print(f"FAILED ({elapsed:.1f} s):")
        print("\n".join(f"  - {f}" for f in failures))
        return 1
    print(f"OK: {', '.join(found)} sampled and matched the vendor tool ({elapsed:.1f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
