"""`ls --diff` and `tui --diff`: the config keys that differ, as columns, over a sweep written
with the real RunWriter (3 learning rates x 2 seeds)."""

from __future__ import annotations

import re

import pytest

from mudpuppy_monitor.cli import main
from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.tui.app import TuiView
from mudpuppy_monitor.tui.render import render_snapshot
from tests import sweep
from tests.serverutil import RunDir
from tests.test_tui_render import render_plain, table_cells

_GAP = re.compile(r"\s{2,}")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    sweep.write_sweep(root)
    return root


def ls_rows(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    lines = [line for line in text.splitlines() if line.strip()]
    headers = _GAP.split(lines[0].strip())
    rows = {}
    for line in lines[1:]:
        cells = _GAP.split(line.strip())
        if len(cells) == len(headers):
            rows[cells[0]] = dict(zip(headers, cells, strict=True))
    return headers, rows


def test_ls_diff_lists_exactly_the_differing_keys(root, capsys):
    assert main(["ls", str(root), "--diff"]) == 0
    headers, rows = ls_rows(capsys.readouterr().out)
    assert headers[:3] == ["run", "lr", "seed"]
    assert "model.name" not in headers and "batch_size" not in headers
    assert set(rows) == {sweep.run_name(lr, s) for lr in sweep.LRS for s in sweep.SEEDS}
    assert rows["lr0.0003-seed1"]["lr"] == "0.0003" and rows["lr0.0003-seed1"]["seed"] == "1"
    assert rows["lr0.001-seed0"]["best"] == f"{sweep.best_loss(1e-3, 0):.4g}"


def test_ls_diff_with_a_filter_compares_only_the_runs_listed(root, capsys):
    assert main(["ls", str(root), "--diff", "--filter", "seed0$"]) == 0
    headers, rows = ls_rows(capsys.readouterr().out)
    assert headers[:2] == ["run", "lr"] and "seed" not in headers
    assert len(rows) == 3
    assert main(["ls", str(root), "--diff", "--filter", "^lr0.001-seed1$"]) == 0
    out = capsys.readouterr().out
    assert "no config key differs between these runs" in out
    assert main(["ls", str(root), "--filter", "("]) == 2
    assert "bad --filter regex" in capsys.readouterr().err
    assert main(["ls", str(root), "--filter", "zzz"]) == 0
    assert "no runs matching /zzz/" in capsys.readouterr().out


def test_ls_without_diff_is_unchanged(root, capsys):
    assert main(["ls", str(root)]) == 0
    headers, _ = ls_rows(capsys.readouterr().out)
    assert headers[:3] == ["run", "source", "status"]


def test_tui_diff_puts_the_keys_after_the_run_name(root):
    mon = Monitor(root, parallel=False)
    view = TuiView(mon, str(root), diff=True, get_time=lambda: sweep.T0 + 10_000)
    snap = view.snapshot()
    assert list(snap.config_keys) == ["lr", "seed"]
    headers, rows = table_cells(render_plain(render_snapshot(snap, 120), 120))
    assert headers[:4] == ["status", "run", "lr", "seed"]
    assert rows["lr0.0001-seed1"]["lr"] == "0.0001" and rows["lr0.0001-seed1"]["seed"] == "1"
    # at 80 columns the keys asked for stay, less important columns go first
    headers80, _ = table_cells(render_plain(render_snapshot(snap, 80), 80))
    assert headers80[:4] == ["status", "run", "lr", "seed"]
    plain = TuiView(mon, str(root), get_time=lambda: sweep.T0 + 10_000).snapshot()
    assert list(plain.config_keys) == []


def test_tui_diff_values_are_printed_inert(tmp_path):
    run = RunDir(tmp_path, "evil", meta={"config": {"note": "\x1b[31mred\x1b[0m", "lr": 1}})
    run.metrics(1, loss=1.0)
    other = RunDir(tmp_path, "plain", meta={"config": {"note": "ok", "lr": 1}})
    other.metrics(1, loss=1.0)
    mon = Monitor(tmp_path, parallel=False)
    snap = TuiView(mon, str(tmp_path), diff=True).snapshot()
    assert list(snap.config_keys) == ["note"]
    text = render_plain(render_snapshot(snap, 120), 120)
    assert "\x1b" not in text and "?[31mred?[0m" in text


def test_tui_command_accepts_diff(root, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["tui", str(root), "--once", "--diff", "--gpu", "none"]) == 0
    headers, _ = table_cells(capsys.readouterr().out)
    assert headers[:4] == ["status", "run", "lr", "seed"]
