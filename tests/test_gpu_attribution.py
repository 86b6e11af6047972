from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field

from mudpuppy_monitor.gpu.attribution import attribute, normalize_uuid, read_ppid
from mudpuppy_monitor.gpu.records import Attribution, GpuProcess, GpuSample, RunOnDevice

HOST = "trainbox"
GIB = 1024**3

# a process tree:  1 (init) ── 500 (bash) ─┬─ 600 (torchrun) ─┬─ 601 rank0 (run "ddp")
#                                           │                  ├─ 602 rank1
#                                           │                  └─ 603 rank2
#                                           ├─ 700 (python, run "solo")
#                                           └─ 800 (python, run "solo2")
#                  1 ── 900 (another user's job)   701 is a child of 700 (a CUDA worker)
PARENTS = {601: 600, 602: 600, 603: 600, 600: 500, 700: 500, 800: 500, 500: 1, 900: 1, 701: 700}


def ppid_of(pid: int) -> int | None:
    return PARENTS.get(pid)


@dataclass
class Run:  # RunSummary-like
    id: str
    pid: int | None = None
    gpus: list[str] = field(default_factory=list)
    host: str | None = HOST
    status: str = "running"
    world_size: int | None = None


def gpu(index: int, *procs: tuple[int, int | None], uuid: str | None = None) -> GpuSample:
    return GpuSample(
        index=index,
        name="NVIDIA H100",
        uuid=uuid or f"GPU-0000000{index}-aaaa-bbbb-cccc-dddddddddddd",
        t=0.0,
        processes=tuple(GpuProcess(pid, used) for pid, used in procs),
    )


def att(samples, runs, **kw) -> dict[int, Attribution]:
    return attribute(samples, runs, hostname=HOST, ppid_of=ppid_of, **kw)


def test_by_uuid_in_torch_spelling() -> None:
    # torch says "00000001-aaaa-..." (no "GPU-" prefix); compare case-insensitively
    samples = [gpu(0), gpu(1, (900, 3 * GIB))]
    runs = [Run("r", pid=None, gpus=["00000001-AAAA-BBBB-CCCC-DDDDDDDDDDDD"], host="elsewhere")]
    out = att(samples, runs)
    assert out[0] == Attribution(index=0, uuid=samples[0].uuid)
    assert out[1].runs == (RunOnDevice("r", "uuid"),)
    assert out[1].run_ids == ("r",)
    # the run's own process is unknown (other host): the visible one is someone else's
    assert out[1].others == (GpuProcess(900, 3 * GIB),)
    assert out[1].others_used_bytes == 3 * GIB


def test_by_pid() -> None:
    samples = [gpu(0, (700, 10 * GIB), (900, 2 * GIB))]
    out = att(samples, [Run("solo", pid=700)])
    assert out[0].runs == (RunOnDevice("solo", "pid", (GpuProcess(700, 10 * GIB),), 10 * GIB),)
    assert out[0].others == (GpuProcess(900, 2 * GIB),)
    assert out[0].others_used_bytes == 2 * GIB


def test_by_parent() -> None:
    # the launcher itself holds a CUDA context
    samples = [gpu(0, (600, 1 * GIB))]
    out = att(samples, [Run("ddp", pid=601)])
    assert out[0].runs == (RunOnDevice("ddp", "parent", (GpuProcess(600, 1 * GIB),), 1 * GIB),)
    assert out[0].others == ()
    assert out[0].others_used_bytes is None


def test_by_sibling_torchrun_workers_on_their_own_devices() -> None:
    samples = [
        gpu(0, (601, 20 * GIB)),
        gpu(1, (602, 21 * GIB)),
        gpu(2, (603, None)),
        gpu(3, (900, GIB)),
    ]
    out = att(samples, [Run("ddp", pid=601, world_size=3)])
    assert out[0].runs[0].reason == "pid"
    assert out[1].runs == (RunOnDevice("ddp", "sibling", (GpuProcess(602, 21 * GIB),), 21 * GIB),)
    assert out[2].runs == (RunOnDevice("ddp", "sibling", (GpuProcess(603, None),), None),)
    assert out[3].runs == ()
    assert out[3].others == (GpuProcess(900, GIB),)


def test_by_child() -> None:
    out = att([gpu(0, (701, GIB))], [Run("solo", pid=700)])
    assert out[0].runs[0].reason == "child"


def test_ppid_from_meta_wins_over_proc() -> None:
    runs = [{"id": "m", "pid": 4000, "ppid": 600, "gpus": [], "host": HOST}]
    out = att([gpu(0, (602, GIB))], runs)  # 4000 is not in the process table at all
    assert out[0].runs[0] == RunOnDevice("m", "sibling", (GpuProcess(602, GIB),), GIB)


def test_process_of_another_user_or_run_is_others() -> None:
    samples = [gpu(0, (700, 8 * GIB), (800, 4 * GIB), (900, 2 * GIB), (12345, None))]
    # "solo2" (pid 800) is a different run; 900 and 12345 belong to no run at all
    out = att(samples, [Run("solo", pid=700, world_size=1), Run("solo2", pid=800, world_size=1)])
    assert out[0].run_ids == ("solo", "solo2")
    assert [r.reason for r in out[0].runs] == ["pid", "pid"]
    assert out[0].others == (GpuProcess(900, 2 * GIB), GpuProcess(12345, None))
    assert out[0].others_used_bytes == 2 * GIB  # unknown memory is not counted as 0 or guessed


def test_shell_siblings_are_not_workers() -> None:
    # "solo" (700) and an untracked job (800) were both started from bash (500)
    samples = [gpu(0, (800, GIB))]
    assert att(samples, [Run("solo", pid=700, world_size=1)])[0].runs == ()
    # world size unknown (no meta yet): a sibling may be a worker, so it is claimed
    out = att(samples, [Run("solo", pid=700), Run("ddp", pid=601)])
    assert out[0].runs == (RunOnDevice("solo", "sibling", (GpuProcess(800, GIB),), GIB),)


def test_ambiguous_siblings_stay_others() -> None:
    # two single-process runs from the same shell, world size unknown: 800's sibling claim
    # points at both "a" and "b" equally
    runs = [{"id": "a", "pid": 700, "ppid": 500}, {"id": "b", "pid": 4001, "ppid": 500}]
    out = att([gpu(0, (800, GIB))], runs)
    assert out[0].runs == ()
    assert out[0].others == (GpuProcess(800, GIB),)


def test_init_is_never_a_common_parent() -> None:
    # 900's parent is 1; a run whose parent is 1 (a daemonised trainer) has no siblings
    out = att([gpu(0, (900, GIB))], [{"id": "d", "pid": 5000, "ppid": 1}])
    assert out[0].runs == ()


def test_other_host_runs_are_never_matched_by_pid() -> None:
    out = att([gpu(0, (700, GIB))], [Run("remote", pid=700, host="otherbox")])
    assert out[0].runs == ()


def test_ended_runs_are_not_attributed() -> None:
    samples = [gpu(0, (700, GIB))]
    for status in ("completed", "failed", "interrupted", "crashed"):
        assert (
            att(samples, [Run("old", pid=700, gpus=[samples[0].uuid], status=status)])[0].runs == ()
        )
    for status in ("running", "stalled", "unknown"):
        assert att(samples, [Run("live", pid=700, status=status)])[0].run_ids == ("live",)


def test_uuid_and_pid_together_keep_the_strongest_reason_and_the_memory() -> None:
    samples = [gpu(0, (700, 5 * GIB))]
    out = att(samples, [Run("solo", pid=700, gpus=[samples[0].uuid])])
    assert out[0].runs == (RunOnDevice("solo", "uuid", (GpuProcess(700, 5 * GIB),), 5 * GIB),)


def test_garbage_in_runs_is_tolerated() -> None:
    runs = [
        {"id": "g", "pid": "not a pid", "gpus": "GPU-x", "host": None},
        {"id": "h", "pid": -3, "gpus": None},
        {"id": "i", "pid": True, "gpus": [None, ""]},
    ]
    out = att([gpu(0, (700, GIB))], runs)
    assert out[0].runs == ()


def test_attribution_to_dict() -> None:
    out = att([gpu(0, (700, GIB), (900, None))], [Run("solo", pid=700)])
    assert out[0].to_dict() == {
        "index": 0,
        "uuid": "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd",
        "runs": ["solo"],
        "evidence": [
            {
                "run_id": "solo",
                "reason": "pid",
                "processes": [{"pid": 700, "used_bytes": GIB}],
                "used_bytes": GIB,
            }
        ],
        "others": [{"pid": 900, "used_bytes": None}],
        "others_used_bytes": None,
    }


def test_normalize_uuid() -> None:
    assert normalize_uuid("GPU-ABC") == "abc"
    assert normalize_uuid(" gpu-abc ") == "abc"
    assert normalize_uuid("MIG-abc") == "mig-abc"


def test_read_ppid_from_real_proc() -> None:
    assert read_ppid(os.getpid()) == os.getppid()
    assert read_ppid(2**22 + 12345) is None  # above pid_max: never exists


def test_read_ppid_survives_parentheses_and_spaces_in_the_name() -> None:
    # a process may name itself anything, including ") 1 2 (": the parser must cut at the last ')'
    code = (
        "import sys\n"
        "open('/proc/self/comm', 'w').write('a) S 1 (b')\n"
        "print('ok', flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ok"
        with open(f"/proc/{child.pid}/comm") as f:
            assert f.read().strip() == "a) S 1 (b"
        assert read_ppid(child.pid) == os.getpid()
    finally:
        child.kill()
        child.wait()


def test_default_ppid_reader_and_hostname_attribute_a_real_child() -> None:
    import socket

    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        # this test process is the "run"; its child holds the "GPU memory"
        samples = [gpu(0, (child.pid, GIB))]
        run = {"id": "me", "pid": os.getpid(), "gpus": [], "host": socket.gethostname()}
        out = attribute(samples, [run])
        assert out[0].runs == (RunOnDevice("me", "child", (GpuProcess(child.pid, GIB),), GIB),)
    finally:
        child.kill()
        child.wait()


def test_read_ppid_garbage_stat_files(tmp_path) -> None:
    cases = {
        1: b"",
        2: b"2 (no closing paren S 1 2 3",
        3: b"3 (x)",
        4: b"4 (x) S",
        5: b"5 (x) S notanumber 5",
        6: b"6 (x) S 77 6 6 0 -1",
        7: "7 (\u00e9\u00e8) S 88 7".encode(),
        8: b"\xff\xfe (x) S 99 8",
    }
    for pid, data in cases.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_bytes(data)
    got = {pid: read_ppid(pid, proc=tmp_path) for pid in cases}
    assert got == {1: None, 2: None, 3: None, 4: None, 5: None, 6: 77, 7: 88, 8: 99}
    assert read_ppid(9, proc=tmp_path) is None  # deleted / never there
