"""The chunked trainer_state.json reader against the Trainer's own layout (real files from
public projects, and files written with the same json.dumps call)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mudpuppy_monitor.core.sources.hf_scan import (
    NotTrainerLayout,
    PrefixChanged,
    Progress,
    scan,
)

FIXTURES = Path(__file__).parent / "fixtures" / "trainer_state"


def _scan(path: Path, since: Progress | None = None, read_bytes: int | None = None):
    rows: list[Any] = []
    calls: list[int] = []

    def on_rows(chunk: list[Any]) -> None:
        calls.append(len(chunk))
        rows.extend(chunk)

    fd = os.open(path, os.O_RDONLY)
    try:
        header, progress = scan(fd, since or Progress(), on_rows, read_bytes=read_bytes)
    finally:
        os.close(fd)
    return header, progress, rows, calls


def _trainer_dump(state: dict[str, Any]) -> str:
    # what transformers' TrainerState.save_to_json writes
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.name)
@pytest.mark.parametrize("read_bytes", [64, 4096, 4 << 20])
def test_real_files_give_the_rows_and_fields_a_whole_parse_gives(path: Path, read_bytes: int):
    whole = json.loads(path.read_text())
    header, progress, rows, calls = _scan(path, read_bytes=read_bytes)
    assert rows == whole["log_history"]
    assert header == {k: v for k, v in whole.items() if k != "log_history"}
    assert progress.rows == len(whole["log_history"])
    if read_bytes == 64:
        assert len(calls) > 1  # decoded in pieces, never all at once


def test_small_reads_bound_each_chunk(tmp_path: Path):
    rows = [{"epoch": i / 100, "loss": 1.0 / (i + 1), "step": i} for i in range(2000)]
    path = tmp_path / "trainer_state.json"
    path.write_text(_trainer_dump({"global_step": 2000, "log_history": rows, "max_steps": 2000}))
    _, progress, got, calls = _scan(path, read_bytes=8192)
    assert got == rows and progress.rows == 2000
    assert max(calls) < 200  # about a read's worth of rows at a time


def test_the_next_checkpoint_is_read_from_where_the_last_one_ended(tmp_path: Path):
    rows = [{"loss": 2.0 - i / 100, "step": i} for i in range(1, 51)]
    first = tmp_path / "checkpoint-50.json"
    first.write_text(_trainer_dump({"global_step": 50, "log_history": rows}))
    _, progress, got, _ = _scan(first, read_bytes=256)
    assert got == rows
    more = rows + [{"loss": 1.0 - i / 1000, "step": i} for i in range(51, 101)]
    second = tmp_path / "checkpoint-100.json"
    second.write_text(_trainer_dump({"global_step": 100, "log_history": more}))
    header, progress2, new, _ = _scan(second, since=progress, read_bytes=256)
    assert new == more[50:]  # only the rows after the ones already read
    assert header["global_step"] == 100
    assert progress2.rows == 100 and progress2.length > progress.length
    # the same file again: nothing new
    _, progress3, again, calls = _scan(second, since=progress2)
    assert again == [] and calls == [] and progress3 == progress2


def test_a_changed_prefix_is_reported(tmp_path: Path):
    rows = [{"loss": 1.0, "step": i} for i in range(1, 21)]
    path = tmp_path / "trainer_state.json"
    path.write_text(_trainer_dump({"log_history": rows}))
    _, progress, _, _ = _scan(path)
    changed = [dict(r) for r in rows] + [{"loss": 0.5, "step": 21}]
    changed[3]["loss"] = 0.9  # same length, other bytes
    path.write_text(_trainer_dump({"log_history": changed}))
    with pytest.raises(PrefixChanged):
        _scan(path, since=progress)
    path.write_text(_trainer_dump({"log_history": rows[:10]}))  # a restart from scratch
    with pytest.raises(PrefixChanged):
        _scan(path, since=progress)


def test_bare_nan_from_pythons_json_is_read(tmp_path: Path):
    path = tmp_path / "trainer_state.json"
    path.write_text(_trainer_dump({"log_history": [{"loss": float("nan"), "step": 1}]}))
    assert "NaN" in path.read_text()
    _, _, rows, _ = _scan(path)
    assert rows[0]["step"] == 1 and rows[0]["loss"] != rows[0]["loss"]


def test_empty_history_and_nested_values(tmp_path: Path):
    path = tmp_path / "trainer_state.json"
    path.write_text(_trainer_dump({"global_step": 0, "log_history": [], "z": [1, 2]}))
    header, progress, rows, _ = _scan(path)
    assert rows == [] and header == {"global_step": 0, "z": [1, 2]} and progress.rows == 0
    nested = [{"step": 1, "extra": {"a": [{"b": 1}, {"c": "x\n    {"}]}, "loss": 1.0}]
    path.write_text(_trainer_dump({"log_history": nested, "tail": {"k": [1]}}))
    header, _, rows, _ = _scan(path, read_bytes=16)
    assert rows == nested and header == {"tail": {"k": [1]}}


@pytest.mark.parametrize(
    "text",
    [
        '{"log_history": [{"step": 1, "loss": 1.0}], "global_step": 1}',  # compact JSON
        '{\n  "log_history": [\n    {\n      "step": 1\n    }\n',  # cut mid-write
        "not json at all",
        "",
    ],
)
def test_other_layouts_are_left_to_a_whole_parse(tmp_path: Path, text: str):
    path = tmp_path / "trainer_state.json"
    path.write_text(text)
    with pytest.raises(NotTrainerLayout):
        _scan(path)
