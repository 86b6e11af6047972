"""The series answer encoded from the store's arrays: JSON (numpy columns through orjson) and the
binary columns negotiated by Accept equal each other value for value, NaN and the infinities
included; a browser decodes the binary answer to the same numbers (web/api.js)."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from mudpuppy_monitor import jsonutil
from mudpuppy_monitor.server import columns
from tests.browser import needs_chromium
from tests.serverutil import LiveServer, RunDir

ODD = [
    1.5,
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    5e-324,
    1.7976931348623157e308,
    0.1,
    1 / 3,
    -2.5e-5,
    1e21,
    123456789.123456789,
]
BIG_STEP = 2**62  # not exact as a double: the binary x column is int64 then
BINARY = {"Accept": columns.MEDIA_TYPE}


def _wire(v: object) -> float:
    """A JSON answer's number as a float (the three strings of the run format included)."""
    if isinstance(v, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[v]
    assert isinstance(v, (int, float)) and not isinstance(v, bool), v
    return float(v)


def _same(a: float, b: float) -> bool:
    """Equal bit for bit as doubles (NaN equals NaN, -0.0 differs from 0.0)."""
    return struct.pack("<d", a) == struct.pack("<d", b)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    odd = RunDir(root, "odd")
    for i, v in enumerate(ODD * 3):
        odd.metrics(i + 1, t=1_700_000_000.0 + i / 3, loss=v, grad_norm=float(i))
    long = RunDir(root, "long")
    rng = np.random.default_rng(7)
    ys = rng.standard_normal(5000) * 10.0 ** rng.integers(-30, 30, 5000)
    ys[[17, 2500, 4999]] = [math.nan, math.inf, -math.inf]
    for i, y in enumerate(ys.tolist()):
        long.metrics(i, t=1_700_000_000.0 + i, loss=y)
    huge = RunDir(root, "huge")
    for k in range(5):
        huge.metrics(BIG_STEP + k, loss=float(k))
    with LiveServer(root) as srv:
        yield srv


QUERIES = [
    "/api/runs/odd/series?names=loss,grad_norm",
    "/api/runs/odd/series?names=loss&x=time",
    "/api/runs/odd/series?names=loss&points=8",
    "/api/runs/odd/series?names=loss&from=3&to=20",
    "/api/runs/long/series?names=loss&points=300",
    "/api/runs/long/series?names=loss&points=100000",
    "/api/runs/long/series?names=loss,steps_per_s&x=time&from=1700000100&to=1700004000&points=50",
    "/api/runs/long/series?names=nothing",
    "/api/runs/huge/series",
]


@pytest.mark.parametrize("path", QUERIES)
def test_binary_columns_equal_the_json_answer_value_for_value(server, path):
    status, headers, body = server.get(path)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert headers["vary"] == "Accept"
    doc = json.loads(body)
    status, headers, raw = server.get(path, headers=BINARY)
    assert status == 200 and headers["content-type"] == columns.MEDIA_TYPE
    assert headers["vary"] == "Accept"
    got = columns.decode(raw)
    assert {k: got[k] for k in ("run", "generation", "x")} == {
        k: doc[k] for k in ("run", "generation", "x")
    }
    assert list(got["series"]) == list(doc["series"])
    for name, s in doc["series"].items():
        b = got["series"][name]
        assert (b["count"], b["decimated"]) == (s["count"], s["decimated"])
        assert len(b["x"]) == len(s["x"]) == len(b["y"]) == len(s["y"])
        if b["x"].dtype.kind == "i":
            assert b["x"].tolist() == s["x"]  # exact integers, as JSON has them
            assert b["x"].dtype == np.dtype("<i4" if doc["run"] != "huge" else "<i8")
        else:
            assert all(_same(float(a), _wire(j)) for a, j in zip(b["x"], s["x"], strict=True))
        assert all(_same(float(a), _wire(j)) for a, j in zip(b["y"], s["y"], strict=True))


def test_the_json_answer_keeps_the_non_finite_strings(server):
    doc = server.get_json("/api/runs/odd/series?names=loss")
    assert doc["series"]["loss"]["y"][:4] == [1.5, "NaN", "Infinity", "-Infinity"]
    assert str(doc["series"]["loss"]["y"][4]) == "-0.0"


def test_large_steps_travel_as_int64(server):
    got = columns.decode(server.get("/api/runs/huge/series", headers=BINARY)[2])
    x = got["series"]["loss"]["x"]
    assert x.dtype == np.dtype("<i8") and x.tolist() == [BIG_STEP + k for k in range(5)]


def test_an_accept_header_without_the_type_gets_json(server):
    for accept in ("application/json", "*/*", "text/html, application/x-other"):
        status, headers, _ = server.get("/api/runs/odd/series", headers={"Accept": accept})
        assert status == 200 and headers["content-type"].startswith("application/json")


def test_numpy_columns_encode_like_lists():
    """jsonutil writes a finite float or int array straight from its buffer: the same bytes as
    the list of the same numbers; an array with a non-finite value keeps the strings."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal(20000) * 10.0 ** rng.integers(-300, 300, 20000)
    a[:6] = [0.0, -0.0, 5e-324, 1e16, 2.0**53, 0.1]
    ints = np.array([0, -1, 2**53 + 1, -(2**63), 2**63 - 1], dtype=np.int64)
    for arr in (a, a[::3], ints, a.astype(">f8")):
        assert jsonutil.dumps({"v": arr}) == jsonutil.dumps({"v": arr.tolist()})
    bad = np.array([1.0, math.nan, math.inf, -math.inf])
    assert jsonutil.dumps(bad) == b'[1.0,"NaN","Infinity","-Infinity"]'


def test_a_truncated_or_foreign_binary_answer_is_refused():
    body = columns.encode(
        "r", 1, "step", {"y": {"x": np.arange(3), "y": np.ones(3), "count": 3, "decimated": False}}
    )
    assert columns.decode(body)["series"]["y"]["y"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        columns.decode(b"{" + body[1:])
    with pytest.raises(ValueError):
        columns.decode(body[:-9])


@needs_chromium
def test_the_dashboard_decoder_reads_the_same_numbers(server, browser):
    page = browser.new_page()
    try:
        page.goto(server.url + "/")
        for path in QUERIES:
            same = page.evaluate(
                """async (path) => {
                  const api = await import("./api.js");
                  const asJson = await (await fetch(path)).json();
                  const res = await fetch(path, { headers: { Accept: api.COLUMNS_TYPE } });
                  const bin = api.decodeColumns(await res.arrayBuffer());
                  const out = [];
                  for (const [name, s] of Object.entries(asJson.series)) {
                    const b = bin.series[name];
                    const x = api.column(s.x), y = api.column(s.y);
                    const ok = b.x.length === x.length && b.y.length === y.length &&
                      b.count === s.count && b.decimated === s.decimated &&
                      x.every((v, i) => Object.is(v, b.x[i])) &&
                      y.every((v, i) => Object.is(v, b.y[i]));
                    out.push([name, ok, b.y.length]);
                  }
                  return out;
                }""",
                path,
            )
            assert all(ok for _, ok, _ in same), (path, same)
    finally:
        page.close()
