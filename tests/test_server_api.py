"""The HTTP API against a real uvicorn server over real run directories."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.serverutil import LiveServer, RunDir

LOSSES = [2.0, 1.8, 1.7, 1.5, math.nan, 1.3, 1.2, 1.1, 1.0, 0.9]
LAYERS = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    alpha = RunDir(root, "alpha", max_steps=10)
    for step, loss in enumerate(LOSSES, start=1):
        alpha.metrics(step, t=1_700_000_000.0 + step, loss=loss, learning_rate=1e-4 / step)
        if step % 5 == 0:
            alpha.lora(step, {name: {"A": 1.0 + step, "B": 0.01 * step} for name in LAYERS})
    alpha.eval(10, eval_loss=1.25)
    alpha.end("completed", step=10)
    sweep = RunDir(root, "sweep/lr-1e-4")
    for step in (1, 2, 3):
        sweep.metrics(step, loss=3.0 - step)
    long = RunDir(root, "long")
    for step in range(1, 1001):
        long.metrics(step, loss=500.0 if step == 437 else 1.0 + (step % 7) / 100)
    with LiveServer(root, gpu="fake", gpu_interval_s=3600.0) as srv:
        yield srv


def test_healthz_counts_runs(server):
    assert server.get_json("/healthz") == {"ok": True, "version": "0.1.0", "runs": 3}


def test_runs_lists_summaries_with_nan_as_string(server):
    runs = {r["id"]: r for r in server.get_json("/api/runs")["runs"]}
    assert set(runs) == {"alpha", "sweep/lr-1e-4", "long"}
    alpha = runs["alpha"]
    assert alpha["status"] == "completed"
    assert alpha["step"] == 10
    assert alpha["max_steps"] == 10
    assert alpha["loss"] == 0.9
    assert alpha["eval_loss"] == 1.25
    assert alpha["nonfinite"] == 1
    assert runs["sweep/lr-1e-4"]["loss"] == 0.0


def test_detail_of_a_run_id_with_a_slash(server):
    detail = server.get_json("/api/runs/sweep/lr-1e-4")
    assert detail["summary"]["id"] == "sweep/lr-1e-4"
    assert "loss" in detail["series"]
    assert detail["source"] == "native"
    assert detail["bad_lines"] == 0


def test_series_raw_keeps_nan_visible(server):
    status, headers, body = server.get(
        "/api/runs/alpha/series?names=loss,learning_rate&points=2000"
    )
    assert status == 200
    assert b"NaN" in body and b"null" not in body.split(b'"loss"')[1].split(b"}")[0]
    doc = json.loads(body)
    assert doc["run"] == "alpha" and doc["x"] == "step"
    loss = doc["series"]["loss"]
    assert loss["x"] == list(range(1, 11))
    assert loss["y"] == [("NaN" if math.isnan(v) else v) for v in LOSSES]
    assert loss["count"] == 10 and loss["decimated"] is False
    assert doc["series"]["learning_rate"]["y"][3] == pytest.approx(1e-4 / 4)


def test_series_by_time_uses_the_written_timestamps(server):
    doc = server.get_json("/api/runs/alpha/series?names=loss&x=time")
    assert doc["series"]["loss"]["x"] == [1_700_000_000.0 + s for s in range(1, 11)]


def test_series_decimation_keeps_the_spike(server):
    doc = server.get_json("/api/runs/long/series?names=loss&points=50")
    loss = doc["series"]["loss"]
    assert loss["count"] == 1000 and loss["decimated"] is True
    assert len(loss["y"]) <= 100
    assert max(loss["y"]) == 500.0
    assert loss["x"][loss["y"].index(500.0)] == 437


def test_series_range_and_unknown_names(server):
    doc = server.get_json("/api/runs/long/series?names=loss,nope&from=10&to=19")
    assert list(doc["series"]) == ["loss"]
    assert doc["series"]["loss"]["x"] == list(range(10, 20))


@pytest.mark.parametrize(
    "query",
    ["x=wall", "points=abc", "from=abc", "to=nan", "from=inf"],
)
def test_bad_series_parameters_are_400(server, query):
    status, _, body = server.get(f"/api/runs/alpha/series?{query}")
    assert status == 400
    assert "error" in json.loads(body)


def test_lora_matrix(server):
    doc = server.get_json("/api/runs/alpha/lora")
    assert doc["layers"] == LAYERS
    assert doc["steps"] == [5, 10]
    assert doc["A"] == [[6.0, 11.0], [6.0, 11.0]]
    assert doc["B"] == [[0.05, 0.1], [0.05, 0.1]]


def test_export_csv_equals_the_file(server):
    status, headers, body = server.get("/api/runs/alpha/export?format=csv")
    assert status == 200
    assert headers["content-type"].startswith("text/csv")
    assert 'filename="alpha.csv"' in headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    got = [(int(r["step"]), float(r["value"])) for r in rows if r["series"] == "loss"]
    assert [s for s, _ in got] == list(range(1, 11))
    for (_, value), expected in zip(got, LOSSES, strict=True):
        assert (math.isnan(value) and math.isnan(expected)) or value == expected


def test_export_jsonl_equals_the_file(server):
    status, headers, body = server.get("/api/runs/alpha/export?format=jsonl")
    assert status == 200
    lines = [json.loads(line) for line in body.decode().splitlines() if line]
    loss = [(d["step"], d["value"]) for d in lines if d.get("series") == "loss"]
    assert [s for s, _ in loss] == list(range(1, 11))
    assert loss[4][1] == "NaN"
    assert [v for _, v in loss if v != "NaN"] == [v for v in LOSSES if not math.isnan(v)]


def test_export_format_is_validated(server):
    assert server.get("/api/runs/alpha/export?format=xml")[0] == 400


def test_unknown_run_and_route_are_404(server):
    for path in ("/api/runs/nope", "/api/runs/nope/series", "/api/runs/", "/api/nothing"):
        status, _, body = server.get(path)
        assert status == 404, path
        assert "error" in json.loads(body)


def test_gpus_from_the_fake_backend(server):
    doc = server.get_json("/api/gpus")
    assert doc["backend"] == "fake" and doc["simulated"] is True
    assert [d["index"] for d in doc["devices"]] == [0, 1]
    assert set(doc["history"]) == {"0", "1"}
    assert len(doc["history"]["0"]["t"]) >= 1
    assert set(doc["attribution"]) == {"0", "1"}


def _samples(families, name):
    return [s for f in families for s in f.samples if s.name == name]


def test_metrics_parse_and_carry_the_values(server):
    status, headers, body = server.get("/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    families = list(text_string_to_metric_families(body.decode()))
    by_run = {s.labels["run"]: s.value for s in _samples(families, "mudpuppy_run_step")}
    assert by_run == {"alpha": 10.0, "sweep/lr-1e-4": 3.0, "long": 1000.0}
    loss = {s.labels["run"]: s.value for s in _samples(families, "mudpuppy_run_loss")}
    assert loss["alpha"] == 0.9 and loss["sweep/lr-1e-4"] == 0.0
    status_1 = {
        (s.labels["run"], s.labels["status"])
        for s in _samples(families, "mudpuppy_run_status")
        if s.value == 1.0
    }
    assert ("alpha", "completed") in status_1
    assert len([k for k in status_1 if k[0] == "alpha"]) == 1
    assert _samples(families, "mudpuppy_runs")[0].value == 3.0
    nonfinite = {
        s.labels["run"]: s.value for s in _samples(families, "mudpuppy_run_nonfinite_values_total")
    }
    assert nonfinite["alpha"] == 1.0

    devices = {d["index"]: d for d in server.get_json("/api/gpus")["devices"]}
    util = {
        int(s.labels["gpu"]): s.value
        for s in _samples(families, "mudpuppy_gpu_utilization_percent")
    }
    assert util == {i: float(d["util_pct"]) for i, d in devices.items()}
    mem = {
        int(s.labels["gpu"]): s.value for s in _samples(families, "mudpuppy_gpu_memory_used_bytes")
    }
    assert mem == {i: float(d["mem_used_bytes"]) for i, d in devices.items()}
    assert _samples(families, "mudpuppy_gpu_simulated")[0].value == 1.0


def test_export_of_a_non_ascii_run_id_names_the_file_in_utf8(tmp_path):
    from urllib.parse import quote

    run = RunDir(tmp_path, "sweep/lr-é-😀")
    run.metrics(1, t=1_700_000_001.0, loss=0.5)
    with LiveServer(tmp_path) as srv:
        status, headers, body = srv.get("/api/runs/" + quote("sweep/lr-é-😀") + "/export")
        assert status == 200
        assert headers["content-disposition"] == (
            'attachment; filename="sweep_lr-_-_.csv"; '
            "filename*=UTF-8''sweep_lr-%C3%A9-%F0%9F%98%80.csv"
        )
        assert "loss,1,1700000001.0,0.5" in body.decode().splitlines()


def test_content_disposition_fallback_has_no_quote_or_backslash():
    from mudpuppy_monitor.server.app import content_disposition

    assert content_disposition('a"b\\c%d', "jsonl") == (
        "attachment; filename=\"a_b_c_d.jsonl\"; filename*=UTF-8''a%22b%5Cc%25d.jsonl"
    )


def test_content_disposition_neutralises_control_and_bidi_characters():
    from mudpuppy_monitor.server.app import content_disposition

    # a directory named to read "uni-exe.txt" saves as a plain .jsonl file named what it is
    assert content_disposition("uni-\u202etxt.exe", "jsonl") == (
        "attachment; filename=\"uni-_txt.exe.jsonl\"; filename*=UTF-8''uni-_txt.exe.jsonl"
    )
    assert "%0A" not in content_disposition("two\nlines", "csv")


def test_data_routes_do_their_work_off_the_event_loop(server, monkeypatch):
    import threading

    monitor = server.ctx.monitor
    loop_thread = server._thread  # uvicorn's event loop runs in this thread
    seen: dict[str, list[bool]] = {}

    def spy(name, real):
        def wrapped(*args, **kwargs):
            seen.setdefault(name, []).append(threading.current_thread() is loop_thread)
            return real(*args, **kwargs)

        monkeypatch.setattr(monitor, name, wrapped)

    for name in ("series", "lora", "detail", "summaries"):
        spy(name, getattr(monitor, name))
    real_export = monitor.export

    def export(*args, **kwargs):
        for chunk in real_export(*args, **kwargs):
            seen.setdefault("export chunk", []).append(threading.current_thread() is loop_thread)
            yield chunk

    monkeypatch.setattr(monitor, "export", export)
    for path in ("series", "lora", "export?format=jsonl", ""):
        status, _, _ = server.get("/api/runs/long/" + path if path else "/api/runs/long")
        assert status == 200, path
    assert server.get("/api/runs")[0] == 200
    assert set(seen) == {"series", "lora", "detail", "summaries", "export chunk"}
    assert not any(on_loop for calls in seen.values() for on_loop in calls), seen


def test_series_generation_is_the_one_of_its_data_across_a_reset(tmp_path, monkeypatch):
    run = RunDir(tmp_path, "g")
    for step in (1, 2, 3):
        run.metrics(step, loss=float(step))
    with LiveServer(tmp_path) as srv:
        monitor = srv.ctx.monitor
        old_generation = monitor.generation("g")
        real_series = monitor.series
        resets = []

        def series_after_a_reset(*args, **kwargs):
            if not resets:  # the run is replaced just before the first query reads it
                resets.append(True)
                run.events.unlink()
                run.seq = 0
                run.append("start")
                run.metrics(1, loss=100.0)
                monitor.refresh()
            return real_series(*args, **kwargs)

        monkeypatch.setattr(monitor, "series", series_after_a_reset)
        doc = srv.get_json("/api/runs/g/series?names=loss")
        assert resets == [True]
        new_generation = monitor.generation("g")
        assert new_generation != old_generation
        assert doc["generation"] == new_generation
        assert doc["series"]["loss"]["x"] == [1] and doc["series"]["loss"]["y"] == [100.0]


def test_lookups_do_not_build_summaries(server, monkeypatch):
    def no_summary(*args, **kwargs):
        raise AssertionError("a summary was built")

    monkeypatch.setattr(server.ctx.monitor, "summary", no_summary)
    monkeypatch.setattr(server.ctx.monitor, "summaries", no_summary)
    monkeypatch.setattr(server.ctx.monitor, "detail", no_summary)
    assert server.get_json("/healthz")["runs"] == 3
    for path in ("series?names=loss", "lora", "export"):
        assert server.get(f"/api/runs/alpha/{path}")[0] == 200, path
    assert server.get("/api/runs/nope/series")[0] == 404


def test_lora_of_a_run_without_snapshots_has_the_keys_of_a_full_answer(server):
    full = server.get_json("/api/runs/alpha/lora")
    empty = server.get_json("/api/runs/long/lora")
    assert set(full) == {"layers", "steps", "t", "A", "B", "update"}
    assert empty == {key: [] for key in full}


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("alpha/series?x=wall", 400, "x must be step or time"),
        ("alpha/series?x=", 400, "x must be step or time"),
        ("alpha/series?from=abc", 400, "from must be a number"),
        ("alpha/series?to=nan", 400, "to must be finite"),
        ("alpha/series?from=-inf", 400, "from must be finite"),
        ("alpha/series?points=abc", 400, "points must be an integer"),
        ("alpha/series?points=2.5", 400, "points must be an integer"),
        # the first bad parameter in the order x, from, to, points
        ("alpha/series?points=zz&to=x&from=y&x=wall", 400, "x must be step or time"),
        ("alpha/series?points=zz&to=x", 400, "to must be a number"),
        ("alpha/lora?points=many", 400, "points must be an integer"),
        ("alpha/export?format=xml", 400, "format must be csv or jsonl"),
        ("alpha/export?format=", 400, "format must be csv or jsonl"),
        # an unknown run is a 404 whatever its parameters say
        ("nope/series?x=wall&points=zz", 404, "no such run"),
        ("nope/lora?points=zz", 404, "no such run"),
        ("nope/export?format=xml", 404, "no such run"),
        ("nope", 404, "no such run"),
        ("../alpha/series", 404, "no such run"),
    ],
)
def test_error_bodies_name_the_parameter(server, path, status, body):
    got, _, raw = server.get(f"/api/runs/{path}")
    assert (got, json.loads(raw)) == (status, {"error": body})


def test_blank_parameters_are_the_defaults_and_points_are_clamped(server):
    blank = server.get_json("/api/runs/long/series?names=loss&from=&to=&points=")
    assert blank["x"] == "step" and blank["series"]["loss"]["count"] == 1000
    assert len(blank["series"]["loss"]["y"]) == 1000  # 2000 points asked: every point, raw
    low = server.get_json("/api/runs/long/series?names=loss&points=1")["series"]["loss"]
    assert low["decimated"] is True and len(low["y"]) <= 3  # clamped up to 2
    huge = server.get_json("/api/runs/long/series?names=loss&points=99999999999999999999")
    assert len(huge["series"]["loss"]["y"]) == 1000  # clamped down to 100000: raw
    assert server.get_json("/api/runs/long/series?names=")["series"] == {}
    spaced = server.get_json("/api/runs/long/series?names=loss&from=%2010%20&to=12")
    assert spaced["series"]["loss"]["x"] == [10, 11, 12]
    assert server.get_json("/api/runs/alpha/lora?points=")["steps"] == [5, 10]
