"""GET /api/config-diff and GET /api/snapshot against a real server over a sweep written with the
real RunWriter (3 learning rates x 2 seeds)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from mudpuppy_monitor.snapshot.data import decode_series
from mudpuppy_monitor.snapshot.page import read_data
from tests import sweep
from tests.serverutil import LiveServer, RunDir


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    sweep.write_sweep(root)
    odd = RunDir(root, "group/odd,name", meta={"config": {"lr": "NaN", "seed": 7}})
    odd.metrics(1, loss=1.0)
    return root


@pytest.fixture(scope="module")
def server(root):
    with LiveServer(root) as srv:
        yield srv


def ids() -> list[str]:
    return [sweep.run_name(lr, s) for lr in sweep.LRS for s in sweep.SEEDS]


def test_config_diff_of_the_sweep_lists_exactly_lr_and_seed(server):
    got = server.get_json("/api/config-diff?runs=" + ",".join(ids()))
    assert got["keys"] == ["lr", "seed"]
    assert set(got["values"]) == set(ids())
    assert got["values"]["lr0.0003-seed1"] == {
        "lr": 3e-4,
        "seed": 1,
        "model.name": "tiny-llama",
        "model.hidden_size": 64,
        "model.layers": 2,
        "lora.r": 8,
        "lora.alpha": 16,
        "lora.targets": ["q_proj", "v_proj"],
        "batch_size": 8,
        "precision": "fp32",
    }


def test_config_diff_of_a_subset_and_of_every_run(server):
    one_lr = server.get_json("/api/config-diff?runs=lr0.001-seed0,lr0.001-seed1")
    assert one_lr["keys"] == ["seed"]
    every = server.get_json("/api/config-diff")
    assert set(every["values"]) == set(ids()) | {"group/odd,name"}
    # the odd run has neither the model nor the lora keys: they differ too
    assert "model.name" in every["keys"] and "lr" in every["keys"]
    assert every["values"]["group/odd,name"] == {"lr": "NaN", "seed": 7}
    # blank entries are ignored; a single run differs in nothing
    assert server.get_json("/api/config-diff?runs=,lr0.001-seed0,,")["keys"] == []


@pytest.mark.parametrize(
    "query",
    ["runs=nope", "runs=lr0.001-seed0,nope", "runs=../etc", "runs=%2Fetc%2Fpasswd"],
)
def test_config_diff_of_an_unknown_run_is_404(server, query):
    status, _, body = server.get("/api/config-diff?" + query)
    assert status == 404
    assert json.loads(body)["error"].startswith("no such run: ")


def test_snapshot_route_answers_one_html_file_of_the_runs_asked(server):
    wanted = ["lr0.001-seed0", "lr0.0001-seed1"]
    view = "focus=lr0.001-seed0&group=key%3Alr"
    query = urlencode({"runs": ",".join(wanted), "view": view})
    status, headers, body = server.get(f"/api/snapshot?{query}")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert headers["content-disposition"].startswith('attachment; filename="mudpuppy-snapshot-')
    doc = read_data(body.decode("utf-8"))
    assert [r["id"] for r in doc["runs"]] == wanted
    assert doc["view"] == view
    assert doc["config"]["keys"] == ["lr", "seed"]
    steps, _, ys = decode_series(doc["series"]["lr0.001-seed0"]["loss"])
    assert steps.tolist() == list(range(1, sweep.STEPS + 1))
    assert ys[-1] == pytest.approx(sweep.loss_at(1e-3, 0, sweep.STEPS), rel=1e-6)
    assert set(doc["lora"]) == set(wanted)


def test_snapshot_of_an_unknown_run_or_an_oversized_view_is_refused(server):
    status, _, body = server.get("/api/snapshot?runs=nope")
    assert status == 404 and json.loads(body) == {"error": "no such run: nope"}
    status, _, body = server.get("/api/snapshot?view=" + "a" * 70000)
    assert status == 400 and json.loads(body)["error"].startswith("view")


def test_compare_routes_need_the_token(root):
    with LiveServer(root, token="s3cret") as srv:
        for path in ("/api/config-diff", "/api/snapshot"):
            status, _, _ = srv.get(path, headers={"Authorization": "Bearer wrong"})
            assert status == 401
        assert srv.get_json("/api/config-diff")["keys"]  # with the token (auth_headers)
