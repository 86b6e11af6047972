"""Which run is on which GPU, and who else is there.

Evidence, strongest first:
- "uuid":    the device's UUID is in the run's meta `gpus` (exact; works across pid namespaces)
- "pid":     a device process is the run's pid
- "child":   a device process's parent is the run's pid
- "parent":  a device process is the run's parent (a launcher holding a CUDA context)
- "sibling": a device process shares the run's parent (torchrun/accelerate workers; the meta is
             written by rank 0 only, so the other ranks are found this way)

Pids are host-local: pid evidence is used only for runs on this host, and never through pid 0/1
(everything orphaned is a child of init). A process claimed as a sibling by two runs (two jobs
started from one shell) is ambiguous and stays with "others". Runs that have ended are not
attributed: their pid may be reused and their UUIDs no longer mean use.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mudpuppy_monitor.gpu.records import Attribution, GpuProcess, GpuSample, RunOnDevice, sum_bytes

ENDED_STATUSES = frozenset({"completed", "failed", "interrupted", "crashed"})
_RANK = {"uuid": 0, "pid": 1, "child": 2, "parent": 3, "sibling": 4}
_NOT_A_PARENT = frozenset({0, 1})

ReadPpid = Callable[[int], "int | None"]


def read_ppid(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The parent pid of `pid` from /proc/<pid>/stat; None if gone or unreadable."""
    try:
        data = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # field 2 (comm) is in parentheses and may itself hold spaces and ')': cut at the last ')'
    try:
        fields = data[data.rindex(b")") + 1 :].split()
        return int(fields[1])  # fields[0] is the state, fields[1] the ppid
    except (ValueError, IndexError):
        return None


def normalize_uuid(value: Any) -> str:
    """NVML says "GPU-5f1a...", torch's device properties say "5f1a...": compare without the
    prefix, case-insensitively. MIG instance UUIDs keep their "MIG-" prefix (they never equal
    a whole-GPU UUID)."""
    text = str(value).strip().lower()
    return text[4:] if text.startswith("gpu-") else text


def _get(run: Any, name: str) -> Any:
    if isinstance(run, dict):
        return run.get(name)
    return getattr(run, name, None)


def _as_pid(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        pid = int(value)
    except (TypeError, ValueError):
        return None
    return pid if pid > 0 else None


class _Run:
    def __init__(self, run: Any, local_host: str, ppid_of: Callable[[int], int | None]) -> None:
        self.id = str(_get(run, "id") or _get(run, "run_id"))
        gpus = _get(run, "gpus") or ()
        self.uuids = {normalize_uuid(u) for u in gpus if u} if not isinstance(gpus, str) else set()
        host = _get(run, "host")
        self.local = not host or host == local_host
        self.pid = _as_pid(_get(run, "pid")) if self.local else None
        ppid = _as_pid(_get(run, "ppid")) if self.local else None
        if ppid is None and self.pid is not None:
            ppid = ppid_of(self.pid)
        self.ppid = ppid if ppid not in _NOT_A_PARENT else None
        world = _get(run, "world_size")
        # a single-process run has no siblings: its parent is a shell whose other children
        # are not its workers
        self.siblings_possible = self.ppid is not None and not (
            isinstance(world, int) and not isinstance(world, bool) and world == 1
        )


def attribute(
    samples: Iterable[GpuSample],
    runs: Iterable[Any],
    *,
    hostname: str | None = None,
    ppid_of: ReadPpid | None = None,
) -> dict[int, Attribution]:
    """Attribute every device in `samples` (keyed by device index) to the runs on it.

    `runs` are RunSummary-like objects or dicts with `id`, `pid`, `gpus`, `host`, and
    optionally `ppid`, `world_size`, `status`. `ppid_of(pid)` reads a parent pid (default:
    /proc); `hostname` is this host's name (default: socket.gethostname())."""
    local_host = hostname if hostname is not None else socket.gethostname()
    reader = ppid_of or read_ppid
    cache: dict[int, int | None] = {}

    def cached_ppid(pid: int) -> int | None:
        if pid not in cache:
            cache[pid] = reader(pid)
        return cache[pid]

    active = [
        _Run(r, local_host, cached_ppid) for r in runs if _get(r, "status") not in ENDED_STATUSES
    ]
    out: dict[int, Attribution] = {}
    for s in samples:
        out[s.index] = _attribute_device(s, active, cached_ppid)
    return out


def _attribute_device(
    s: GpuSample, runs: list[_Run], ppid_of: Callable[[int], int | None]
) -> Attribution:
    uuid = normalize_uuid(s.uuid)
    reasons: dict[str, str] = {r.id: "uuid" for r in runs if uuid in r.uuids}
    owned: dict[str, list[GpuProcess]] = {}
    others: list[GpuProcess] = []
    for proc in s.processes:
        owner = _owner(proc.pid, runs, ppid_of)
        if owner is None:
            others.append(proc)
            continue
        run_id, reason = owner
        owned.setdefault(run_id, []).append(proc)
        if run_id not in reasons or _RANK[reason] < _RANK[reasons[run_id]]:
            reasons[run_id] = reason
    on_device = tuple(
        RunOnDevice(
            run_id=run_id,
            reason=reasons[run_id],
            processes=tuple(owned.get(run_id, ())),
            used_bytes=sum_bytes(owned.get(run_id, [])),
        )
        for run_id in sorted(reasons)
    )
    return Attribution(
        index=s.index,
        uuid=s.uuid,
        runs=on_device,
        others=tuple(others),
        others_used_bytes=sum_bytes(others),
    )


def _owner(
    pid: int, runs: list[_Run], ppid_of: Callable[[int], int | None]
) -> tuple[str, str] | None:
    """The run a device process belongs to, by the strongest evidence; None if nobody's or
    if the best evidence points at two runs equally."""
    best: list[tuple[int, str, str]] = []
    parent: int | None = None
    parent_read = False
    for r in runs:
        if r.pid is None and r.ppid is None:
            continue
        if pid == r.pid:
            best.append((_RANK["pid"], r.id, "pid"))
            continue
        if not parent_read:
            parent, parent_read = ppid_of(pid), True
        if r.pid is not None and parent == r.pid:
            best.append((_RANK["child"], r.id, "child"))
        elif r.ppid is not None and pid == r.ppid:
            best.append((_RANK["parent"], r.id, "parent"))
        elif r.siblings_possible and parent is not None and parent == r.ppid:
            best.append((_RANK["sibling"], r.id, "sibling"))
    if not best:
        return None
    top = min(rank for rank, _, _ in best)
    winners = {(run_id, reason) for rank, run_id, reason in best if rank == top}
    if len({run_id for run_id, _ in winners}) != 1:
        return None
    return next(iter(winners))
