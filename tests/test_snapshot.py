"""The snapshot command and its parts: the module bundler, the page template, the data within a
size budget. (Opening a snapshot in Chromium is in test_web_compare.py.)"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from mudpuppy_monitor.cli import main
from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.snapshot import build_snapshot
from mudpuppy_monitor.snapshot.bundle import BundleError, bundle
from mudpuppy_monitor.snapshot.data import CHART_SERIES, decode_series, points_per_series
from mudpuppy_monitor.snapshot.page import CSP, PageError, PageTemplate, read_data
from mudpuppy_monitor.webdir import default_web_dir
from tests import sweep
from tests.serverutil import RunDir

WEB = default_web_dir()


def test_every_dashboard_module_bundles(tmp_path):
    entries = sorted(p.name for p in WEB.glob("*.js"))
    text = bundle(WEB, entries)
    for name in entries:
        assert f"// ---- {name}" in text
    assert "</script" not in text and "<!--" not in text
    assert not re.search(r"^(import|export)\b", text, re.MULTILINE)


def test_bundle_orders_dependencies_and_renames_imports(tmp_path):
    (tmp_path / "a.js").write_text(
        'export const A = 1;\nexport function f() { return "</script>"; }\n'
    )
    (tmp_path / "b.js").write_text(
        'import {\n  A,\n  f as g,\n} from "./a.js";\nexport class B {}\nconsole.log(A, g());\n'
    )
    text = bundle(tmp_path, ["b.js"])
    assert text.index("// ---- a.js") < text.index("// ---- b.js")
    assert "const { A, f: g } = __mod_a;" in text
    assert "return { A, f };" in text and "return { B };" in text
    assert "<\\/script>" in text


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('import x from "./a.js";\n', "cannot bundle"),
        ("export let n = 1;\n", "cannot bundle"),
        ("export default 3;\n", "cannot bundle"),
        ('import { nope } from "./a.js";\n', "does not export"),
        ('import { A } from "./missing.js";\n', "module not found"),
        ('import { C } from "./c.js";\nexport const D = 1;\n', "import cycle"),
    ],
)
def test_bundle_refuses_what_it_cannot_do_faithfully(tmp_path, source, message):
    (tmp_path / "a.js").write_text("export const A = 1;\n")
    (tmp_path / "c.js").write_text('import { D } from "./d.js";\nexport const C = 1;\n')
    (tmp_path / "d.js").write_text(source)
    with pytest.raises(BundleError, match=message):
        bundle(tmp_path, ["d.js"])


def test_page_inlines_styles_and_scripts_and_forbids_every_load():
    page = PageTemplate(WEB)
    html = page.fill('{"x": "</script><script>alert(1)</script>"}')
    assert '<link rel="stylesheet"' not in html
    assert 'src="' not in html
    assert all(h.startswith("data:") for h in re.findall(r'<link [^>]*href="([^"]*)"', html))
    assert '<link rel="icon" href="data:image/svg+xml,' in html  # the dashboard's own icon
    assert f'content="{CSP}"' in html
    assert "connect-src 'none'" in CSP and "default-src 'none'" in CSP
    assert html.count("</script>") == 2  # the data element and the bundle, nothing injected
    assert read_data(html) == {"x": "</script><script>alert(1)</script>"}


def test_page_refuses_a_stylesheet_that_loads_something(tmp_path):
    for f in WEB.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "compare.css").write_text("body { background: url(https://example.com/x.png); }")
    with pytest.raises(PageError, match="loads a resource"):
        PageTemplate(tmp_path)


def test_chart_series_match_the_dashboards_charts():
    views = (WEB / "views.js").read_text()
    charted = set(re.findall(r'name: "(\w+)"', views))
    assert charted == set(CHART_SERIES)


def test_points_per_series_follows_the_budget():
    assert points_per_series(10e6, 10) == 2000
    assert points_per_series(1e6, 100) == int(((1e6 / 100 - 160) / 16 - 2) / 1.5)
    assert points_per_series(0, 100) == 64


def test_snapshot_stays_within_its_budget_and_keeps_every_runs_last_step(tmp_path):
    root = tmp_path / "runs"
    for k in range(6):
        run = RunDir(root, f"big-{k}")
        for s in range(1, 20001):
            loss = math.nan if s == 777 else 2.0 / math.sqrt(s) + (5.0 if s == 12345 else 0.0)
            run.metrics(s, t=1e9 + s, loss=loss, learning_rate=1e-4, grad_norm=1.0)
    mon = Monitor(root, parallel=False)
    mon.refresh()
    ids = sorted(mon.run_ids())
    snap = build_snapshot(mon, ids, WEB, max_bytes=600_000)
    assert snap.size_bytes <= 600_000
    assert snap.points_per_series < 2000  # the budget lowered the resolution
    doc = read_data(snap.html)
    for run_id in ids:
        steps, ts, ys = decode_series(doc["series"][run_id]["loss"])
        assert steps[0] == 1 and steps[-1] == 20000 and ts[-1] == 1e9 + 20000
        assert np.isnan(ys[steps.tolist().index(777)])  # the NaN survives decimation
        assert np.nanmax(ys) == pytest.approx(5.0 + 2.0 / math.sqrt(12345), rel=1e-6)  # the spike
        assert doc["series"][run_id]["loss"]["count"] == 20000
    big = build_snapshot(mon, ids, WEB, max_bytes=50_000_000)
    assert big.points_per_series == 2000 and big.size_bytes > snap.size_bytes


def test_snapshot_command_writes_one_file(tmp_path, capsys):
    sweep.write_sweep(tmp_path / "runs")
    out = tmp_path / "report.html"
    assert main(["snapshot", str(tmp_path / "runs"), "--runs", r"seed1$", "-o", str(out)]) == 0
    doc = read_data(out.read_text(encoding="utf-8"))
    assert [r["id"] for r in doc["runs"]] == [
        "lr0.0001-seed1", "lr0.0003-seed1", "lr0.001-seed1",
    ]  # fmt: skip
    assert doc["config"]["keys"] == ["lr"]
    meta = doc["details"]["lr0.001-seed1"]["meta"]
    assert set(meta) == {"name", "config"}  # no argv, host paths or environment
    assert capsys.readouterr().out.startswith(f"wrote {out}: 3 run(s), ")
    assert not list(tmp_path.glob("report.html.tmp*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runs", "("], "bad --runs regex"),
        (["--runs", "zzz"], "no runs matching /zzz/"),
        (["--max-mb", "0"], "--max-mb must be a positive number"),
        (["--max-mb", "nan"], "--max-mb must be a positive number"),
    ],
)
def test_snapshot_command_errors_are_one_line(tmp_path, capsys, args, message):
    sweep.write_sweep(tmp_path, steps=5)
    assert main(["snapshot", str(tmp_path), "-o", str(tmp_path / "x.html"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_snapshot_command_missing_root_or_unwritable_output(tmp_path, capsys):
    assert main(["snapshot", str(tmp_path / "nope"), "-o", str(tmp_path / "x.html")]) == 2
    assert "root not found" in capsys.readouterr().err
    sweep.write_sweep(tmp_path / "runs", steps=5)
    target = tmp_path / "no-such-dir" / "x.html"
    assert main(["snapshot", str(tmp_path / "runs"), "-o", str(target)]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert not Path(str(target) + ".tmp").exists()
