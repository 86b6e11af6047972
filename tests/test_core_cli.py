"""`ls` and `export` through the real entry point: tables, files, one-line errors with exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mudpuppy_callback import encode_line

from mudpuppy_monitor.cli import main
from tests.conftest import FIXTURES

T0 = 1_700_000_000.0


def _native(root: Path, name: str, n: int) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"name": name, "max_steps": 100, "host": "elsewhere"}))
    lines = [encode_line({"v": 1, "seq": 0, "t": T0, "kind": "start"})]
    for i in range(1, n + 1):
        lines.append(
            encode_line(
                {
                    "v": 1,
                    "seq": i,
                    "t": T0 + i,
                    "kind": "metrics",
                    "step": i,
                    "values": {"loss": 2.0 / i},
                }
            )
        )
    lines.append(
        encode_line(
            {"v": 1, "seq": n + 1, "t": T0 + n + 1, "kind": "end", "status": "completed", "step": n}
        )
    )
    (d / "events.jsonl").write_bytes(b"".join(lines))


def test_ls_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _native(tmp_path, "sweep/lr-1e-4", 40)
    (tmp_path / "lf").mkdir()
    shutil.copyfile(
        FIXTURES / "llamafactory" / "qwen_medical_lr_with_eval.jsonl",
        tmp_path / "lf" / "trainer_log.jsonl",
    )
    assert main(["ls", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "run",
        "source",
        "status",
        "step/max",
        "loss",
        "best",
        "eval",
        "loss",
        "steps/s",
        "ETA",
        "last",
        "update",
    ]
    native = next(ln for ln in lines if ln.startswith("sweep/lr-1e-4"))
    assert native.split()[:6] == ["sweep/lr-1e-4", "native", "completed", "40/100", "0.05", "0.05"]
    lf = next(ln for ln in lines if ln.startswith("lf "))
    assert lf.split()[:7] == [
        "lf",
        "llamafactory",
        "running",
        "3240/6750",
        "1.702",
        "1.48",
        "1.566",
    ]


def test_ls_empty_and_missing_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", str(tmp_path)]) == 0
    assert "no runs" in capsys.readouterr().out
    assert main(["ls", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"mudpuppy-monitor: root not found: {tmp_path / 'nope'}"
    (tmp_path / "file").write_text("x")
    assert main(["ls", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_export_to_stdout_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _native(tmp_path, "run", 5)
    assert main(["export", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "series,step,t,value"
    assert out[1] == f"loss,1,{T0 + 1!r},2.0"
    assert sum(1 for ln in out if ln.startswith("loss,")) == 5
    target = tmp_path / "out.jsonl"
    assert main(["export", str(tmp_path / "run"), "--format", "jsonl", "-o", str(target)]) == 0
    rows = [json.loads(ln) for ln in target.read_text().splitlines()]
    assert rows[4] == {"series": "loss", "step": 5, "t": T0 + 5, "value": 0.4}


def test_export_bad_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and len(err.strip().splitlines()) == 1
    _native(tmp_path, "run", 2)
    assert (
        main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "no" / "such" / "dir.csv")])
        == 2
    )
    assert "cannot write" in capsys.readouterr().err


def test_export_of_trainer_state_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").mkdir()
    shutil.copyfile(
        FIXTURES / "trainer_state" / "old_transformers_no_grad_norm.json",
        tmp_path / "out" / "trainer_state.json",
    )
    assert main(["export", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "learning_rate,500,,4.903294573643411e-05"
    assert sum(1 for ln in out if ln.startswith("loss,")) == 51


def test_ls_prints_hostile_run_names_inert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _native(tmp_path, "evil\x1b[2J[bold]x", 3)
    assert main(["ls", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out  # no escape sequence reaches the terminal
    assert "evil?[2J[bold]x" in out  # markup shown as text, control character as '?'
