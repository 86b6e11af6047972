"""`POST /api/series` (many runs in one request) and the error bodies of the framework's own
answers, against a real uvicorn server over real run directories."""

from __future__ import annotations

import http.client
import json
import math
import os
from pathlib import Path

import pytest

from mudpuppy_monitor.server import batch
from tests.serverutil import LiveServer, RunDir

T0 = 1_700_000_000.0
TOKEN = "b4tch-t0ken"


def write_root(root: Path) -> None:
    for k in range(3):
        run = RunDir(root, f"sweep/lr,{k}", max_steps=100)  # a comma: ids are a JSON list
        for s in range(1, 101):
            loss = math.nan if (k == 1 and s == 7) else 2.0 - s / 100 + k
            run.metrics(s, t=T0 + s, loss=loss, learning_rate=1e-4)
        run.append("checkpoint", t=T0 + 50, step=50, path="checkpoint-50")
    lora = RunDir(root, "adapters")
    lora.metrics(1, loss=1.0)
    lora.lora(1, {"model.layers.0.q_proj": {"A": 1.0, "B": 0.0}})
    (root / "untouched").mkdir()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_root(root)
    return root


@pytest.fixture(scope="module")
def server(root):
    with LiveServer(root) as srv:
        yield srv


def post(server, path: str, body: object, headers: dict[str, str] | None = None):
    """(status, headers, parsed body or raw bytes) of a POST."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        hdrs = {"Content-Type": "application/json", **server.auth_headers(), **(headers or {})}
        conn.request("POST", path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        hs = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    try:
        return resp.status, hs, json.loads(raw)
    except ValueError:
        return resp.status, hs, raw


def test_many_runs_in_one_answer_equal_the_per_run_route(server):
    ids = ["sweep/lr,0", "sweep/lr,1", "sweep/lr,2"]
    status, _, doc = post(server, "/api/series", {"runs": ids, "names": ["loss", "nope"]})
    assert status == 200
    assert doc["x"] == "step" and doc["points"] == 2000 and doc["missing"] == []
    assert [r["id"] for r in doc["runs"]] == ids
    for entry in doc["runs"]:
        one = server.get_json(f"/api/runs/{entry['id'].replace(',', '%2C')}/series?names=loss")
        assert entry["series"] == one["series"]  # unknown names are left out, as there
        assert entry["generation"] == one["generation"]
        detail = server.get_json(f"/api/runs/{entry['id'].replace(',', '%2C')}")
        assert entry["markers"] == detail["markers"]
        assert entry["lora_snapshots"] == 0
    nan_run = doc["runs"][1]
    assert nan_run["series"]["loss"]["y"][6] == "NaN"  # a NaN stays visible
    assert {m["kind"] for m in nan_run["markers"]} == {"nonfinite", "checkpoint"}


def test_range_time_axis_and_resolution(server):
    body = {"runs": ["sweep/lr,0"], "names": ["loss"], "x": "time", "from": T0 + 10, "to": T0 + 19}
    status, _, doc = post(server, "/api/series", body)
    assert status == 200
    assert doc["runs"][0]["series"]["loss"]["x"] == [T0 + s for s in range(10, 20)]
    status, _, doc = post(server, "/api/series", {**body, "from": None, "to": None, "points": 10})
    loss = doc["runs"][0]["series"]["loss"]
    assert loss["decimated"] is True and loss["count"] == 100 and len(loss["x"]) <= 20


def test_unknown_runs_are_listed_as_missing_and_ids_kept_once(server):
    body = {"runs": ["adapters", "gone", "adapters", "untouched"], "names": ["loss"]}
    status, _, doc = post(server, "/api/series", body)
    assert status == 200
    assert [r["id"] for r in doc["runs"]] == ["adapters"]
    assert doc["runs"][0]["lora_snapshots"] == 1
    assert doc["missing"] == ["gone", "untouched"]


def test_the_answer_is_bounded_by_lowering_the_resolution(server):
    runs = [f"r{k}" for k in range(batch.MAX_RUNS)]
    names = [f"n{k}" for k in range(batch.MAX_NAMES)]
    status, _, doc = post(server, "/api/series", {"runs": runs, "names": names, "points": 100_000})
    assert status == 200
    assert doc["points"] == batch.MAX_VALUES // (batch.MAX_RUNS * batch.MAX_NAMES)
    status, _, doc = post(server, "/api/series", {"runs": ["a"], "names": ["loss"], "points": 1})
    assert doc["points"] == 2  # clamped, as on the per-run route


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json", 400, "body is not valid JSON"),
        (b'{"runs": ["a"], "names": ["loss"], "to": Infinity}', 400, "body is not valid JSON"),
        ([1, 2], 400, "body must be a JSON object"),
        ({"names": ["loss"]}, 400, "runs must be a list of 1 to 200 non-empty strings"),
        ({"runs": [], "names": ["loss"]}, 400, "runs must be a list of 1 to 200 non-empty strings"),
        ({"runs": "a,b", "names": ["loss"]}, 400, "runs must be a list"),
        ({"runs": [f"r{k}" for k in range(201)], "names": ["x"]}, 400, "runs must be a list"),
        ({"runs": ["a"]}, 400, "names must be a list of 1 to 64 non-empty strings"),
        ({"runs": ["a"], "names": [""]}, 400, "names must be a list"),
        ({"runs": ["../etc"], "names": ["loss"]}, 400, "runs: not a run id: '../etc'"),
        ({"runs": ["a\nb"], "names": ["loss"]}, 400, "runs: not a run id"),
        ({"runs": ["/etc/passwd"], "names": ["loss"]}, 400, "runs: not a run id"),
        ({"runs": ["a"], "names": ["loss"], "x": "wall"}, 400, "x must be step or time"),
        ({"runs": ["a"], "names": ["loss"], "from": "1"}, 400, "from must be a number"),
        ({"runs": ["a"], "names": ["loss"], "to": None, "from": True}, 400, "from must be a"),
        ({"runs": ["a"], "names": ["loss"], "points": 2.5}, 400, "points must be an integer"),
        ({"runs": ["a"], "names": ["loss"], "point": 5}, 400, "unknown field: point"),
    ],
)
def test_bad_bodies_are_400_with_one_clear_line(server, body, status, message):
    got, _, doc = post(server, "/api/series", body)
    assert got == status
    assert doc["error"].startswith(message), doc


def test_only_json_bodies_of_bounded_size_are_read(server):
    status, _, doc = post(server, "/api/series", b"{}", {"Content-Type": "text/plain"})
    assert (status, doc) == (415, {"error": "content-type must be application/json"})
    huge = json.dumps({"runs": ["a"], "names": ["loss"], "pad": "x" * (2 << 20)}).encode()
    status, _, doc = post(server, "/api/series", huge)
    assert (status, doc) == (413, {"error": "request body larger than 1 MiB"})
    status, headers, doc = server.get("/api/series")
    assert status == 405 and headers["allow"] == "POST"
    assert json.loads(doc) == {"error": "use POST with a JSON body"}


def test_the_route_writes_nothing_under_the_root(server, root):
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    post(server, "/api/series", {"runs": ["adapters", "sweep/lr,0"], "names": ["loss"]})
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_a_token_is_needed(root):
    with LiveServer(root, token=TOKEN) as srv:
        body = {"runs": ["adapters"], "names": ["loss"]}
        srv.token = None  # send nothing
        status, _, doc = post(srv, "/api/series", body)
        assert (status, doc) == (401, {"error": "token required"})
        status, _, doc = post(srv, "/api/series", body, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and doc["runs"][0]["id"] == "adapters"


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/nope.js", 404, "not found"),
        ("GET", "/deep/er/file.css", 404, "not found"),
        ("POST", "/", 405, "method not allowed"),
        ("DELETE", "/app.js", 405, "method not allowed"),
        ("POST", "/api/runs", 405, "method not allowed"),
        ("GET", "/api/nothing", 404, "no such route"),
        ("GET", "/api/runs/nope", 404, "no such run"),
    ],
)
def test_every_error_body_is_an_error_object(server, method, path, status, message):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == status
    assert resp.getheader("content-type") == "application/json"
    assert json.loads(body) == {"error": message}


def test_a_run_whose_path_cannot_be_an_id_is_not_listed(tmp_path, caplog):
    """A directory with a line break or bytes that are not UTF-8 in its name (made by something
    other than the writer): discovery skips it with one message, so no route is asked for it."""
    RunDir(tmp_path, "fine").metrics(1, loss=1.0)
    RunDir(tmp_path, "two\nlines").metrics(1, loss=1.0)
    RunDir(tmp_path, "back\\slash").metrics(1, loss=1.0)
    raw = os.path.join(os.fsencode(tmp_path), b"latin-\xe9")
    os.makedirs(raw)
    with open(os.path.join(raw, b"events.jsonl"), "wb") as f:
        f.write(
            b'{"v": 1, "seq": 0, "t": 1, "kind": "metrics", "step": 1, "values": {"loss": 1}}\n'
        )
    with LiveServer(tmp_path) as srv:
        assert [r["id"] for r in srv.get_json("/api/runs")["runs"]] == ["fine"]
        status, _, doc = post(srv, "/api/series", {"runs": ["fine"], "names": ["loss"]})
        assert status == 200 and doc["missing"] == []
        srv.ctx.monitor.refresh()  # another pass: no second message
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 3, skipped
    assert any(repr(str(tmp_path / "two\nlines")) in m for m in skipped)
    assert all("\n" not in m for m in skipped)
