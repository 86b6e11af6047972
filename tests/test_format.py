"""Format v1: encode_line / decode_line, the codec shared by the writer and the daemon."""

from __future__ import annotations

import json
import math

import mudpuppy_callback as mc
import numpy as np
import pytest
from mudpuppy_callback import FormatError, decode_line, decode_number, encode_line, encode_number


def _strict_loads(line: bytes) -> object:
    def reject(token: str) -> object:
        raise ValueError(f"bare {token} is not JSON")

    return json.loads(line, parse_constant=reject)


def _event(kind: str, **fields: object) -> dict[str, object]:
    return {"v": 1, "seq": 3, "t": 1700000000.25, "kind": kind, **fields}


def test_constants_match_the_spec() -> None:
    assert mc.FORMAT == "mudpuppy-run/1"
    assert mc.FORMAT_VERSION == 1
    assert mc.META_FILE == "meta.json"
    assert mc.EVENTS_FILE == "events.jsonl"
    assert mc.KINDS == {
        "start",
        "metrics",
        "eval",
        "lora",
        "progress",
        "checkpoint",
        "end",
        "samples",
    }
    assert mc.STEP_KINDS == {"metrics", "eval", "lora", "progress", "checkpoint", "samples"}
    assert mc.END_STATUSES == {"completed", "failed", "interrupted"}
    assert mc.MAX_LINE_BYTES == 1048576


def test_metrics_line_is_compact_json_with_one_newline() -> None:
    line = encode_line(_event("metrics", step=7, epoch=0.5, values={"loss": 1.25, "n": 3}))
    assert line == (
        b'{"v":1,"seq":3,"t":1700000000.25,"kind":"metrics","step":7,"epoch":0.5,'
        b'"values":{"loss":1.25,"n":3}}\n'
    )
    assert line.count(b"\n") == 1


def test_non_finite_values_become_strings_and_come_back_as_floats() -> None:
    values = {"loss": math.nan, "grad_norm": math.inf, "neg": -math.inf, "lr": 1e-4}
    line = encode_line(_event("metrics", step=1, epoch=math.nan, values=values))
    strict = _strict_loads(line)  # a parser that rejects bare NaN accepts the line
    assert strict["values"] == {  # type: ignore[index]
        "loss": "NaN",
        "grad_norm": "Infinity",
        "neg": "-Infinity",
        "lr": 1e-4,
    }
    assert strict["epoch"] == "NaN"  # type: ignore[index]
    back = decode_line(line)
    assert math.isnan(back["values"]["loss"])
    assert back["values"]["grad_norm"] == math.inf
    assert back["values"]["neg"] == -math.inf
    assert back["values"]["lr"] == 1e-4
    assert math.isnan(back["epoch"])


def test_lora_layers_encode_non_finite_norms() -> None:
    layers = {"model.layers.0.self_attn.q_proj": {"A": 1.5, "B": math.nan, "update": 0.25}}
    line = encode_line(_event("lora", step=10, layers=layers))
    assert _strict_loads(line)["layers"]["model.layers.0.self_attn.q_proj"]["B"] == "NaN"  # type: ignore[index]
    back = decode_line(line)["layers"]["model.layers.0.self_attn.q_proj"]
    assert back["A"] == 1.5 and back["update"] == 0.25 and math.isnan(back["B"])


def test_encode_number_handles_numpy_scalars() -> None:
    assert encode_number(np.float64("nan")) == "NaN"
    assert encode_number(np.float32("-inf")) == "-Infinity"
    assert encode_number(2.5) == 2.5


def test_decode_number() -> None:
    assert decode_number(3) == 3.0
    assert decode_number("Infinity") == math.inf
    assert decode_number(True) is None
    assert decode_number("1.5") is None
    assert decode_number(None) is None


def test_integers_beyond_float_range_read_as_infinity() -> None:
    # float(10**400) raises OverflowError: a reader must not die of one such value
    assert decode_number(10**400) == math.inf
    assert decode_number(-(10**400)) == -math.inf
    assert decode_number(2**1023) == float(2**1023)  # large but representable: exact
    line = (
        b'{"v":1,"seq":0,"t":1,"kind":"metrics","step":1,"epoch":1' + b"0" * 400 + b","
        b'"values":{"big":1' + b"0" * 400 + b',"neg":-1' + b"0" * 400 + b',"loss":0.5}}'
    )
    event = decode_line(line)
    assert event["values"] == {"big": math.inf, "neg": -math.inf, "loss": 0.5}
    assert event["epoch"] == math.inf
    lora = b'{"v":1,"seq":0,"t":1,"kind":"lora","step":1,"layers":{"m":{"A":1' + b"0" * 400 + b"}}}"
    assert decode_line(lora)["layers"] == {"m": {"A": math.inf}}


def test_step_must_fit_in_int64() -> None:
    assert mc.MAX_STEP == 2**63
    ok = b'{"v":1,"seq":0,"t":1,"kind":"progress","step":9223372036854775807}'
    assert decode_line(ok)["step"] == 2**63 - 1
    for step in (b"9223372036854775808", b"1" + b"0" * 400, b"1e300"):
        line = b'{"v":1,"seq":0,"t":1,"kind":"progress","step":' + step + b"}"
        with pytest.raises(FormatError, match="non-negative integer step below 2\\*\\*63"):
            decode_line(line)


def test_readers_accept_bare_non_finite_tokens() -> None:
    line = b'{"v":1,"seq":0,"t":1.0,"kind":"metrics","step":1,"values":{"loss":NaN,"x":-Infinity}}'
    values = decode_line(line)["values"]
    assert math.isnan(values["loss"]) and values["x"] == -math.inf


def test_every_kind_round_trips() -> None:
    events = [
        _event("start", run_id="abc"),
        _event("start", run_id="abc", resumed_from=40),
        _event("metrics", step=1, epoch=0.01, values={"loss": 2.0}),
        _event("eval", step=5, values={"eval_loss": 1.5}),
        _event("lora", step=5, layers={"m.q": {"A": 1.0, "B": 0.5, "update": 0.1}}),
        _event("progress", step=6),
        _event("checkpoint", step=10, path="out/checkpoint-10"),
        _event("end", status="failed", step=12, error="RuntimeError: boom"),
        _event("samples", step=15, items=[{"prompt": "a", "completion": "b"}], took_s=0.5),
    ]
    for event in events:
        assert decode_line(encode_line(event)) == event


def test_str_input_and_bom_and_trailing_whitespace() -> None:
    text = "\ufeff" + encode_line(_event("progress", step=2)).decode() + "  \r\n"
    assert decode_line(text)["step"] == 2


def test_integral_float_step_is_read_as_int() -> None:
    assert decode_line(b'{"v":1,"seq":0,"t":1,"kind":"progress","step":4.0}')["step"] == 4


def test_non_numeric_values_are_dropped_but_the_line_kept() -> None:
    line = b'{"v":1,"seq":0,"t":1,"kind":"metrics","step":1,"values":{"a":1,"b":"x","c":true,"d":null,"e":[1]}}'
    assert decode_line(line)["values"] == {"a": 1.0}


BAD_LINES = [
    (b"", "empty line"),
    (b"   \n", "empty line"),
    (b'{"v":1,"seq":0,"t":1,"kind":"metrics","step":1,"val', "invalid JSON"),  # truncated
    (b"\x00\x01garbage", "invalid JSON"),
    (b"\xff\xfe{}", "invalid UTF-8"),
    (b"[1,2]", "expected an object"),
    (b'"text"', "expected an object"),
    (b'{"seq":0,"t":1,"kind":"start"}', "unsupported version"),
    (b'{"v":true,"seq":0,"t":1,"kind":"start"}', "unsupported version"),
    (b'{"v":2,"seq":0,"t":1,"kind":"start"}', "unsupported version"),
    (b'{"v":1,"seq":0,"t":1,"kind":"nope"}', "unknown kind"),
    (b'{"v":1,"t":1,"kind":"start"}', "seq must be"),
    (b'{"v":1,"seq":-1,"t":1,"kind":"start"}', "seq must be"),
    (b'{"v":1,"seq":false,"t":1,"kind":"start"}', "seq must be"),
    (b'{"v":1,"seq":0,"kind":"start"}', "t must be"),
    (b'{"v":1,"seq":0,"t":"NaN","kind":"start"}', "t must be"),
    (b'{"v":1,"seq":0,"t":1' + b"0" * 400 + b',"kind":"start"}', "t must be"),
    (b'{"v":1,"seq":-9223372036854775809,"t":1,"kind":"start"}', "seq must be"),
    (b'{"v":1,"seq":0,"t":1,"kind":"end","status":"completed","step":-1}', "integer step"),
    (b'{"v":1,"seq":0,"t":1,"kind":"metrics","values":{}}', "non-negative integer step"),
    (b'{"v":1,"seq":0,"t":1,"kind":"progress","step":-3}', "non-negative integer step"),
    (b'{"v":1,"seq":0,"t":1,"kind":"progress","step":1.5}', "non-negative integer step"),
    (b'{"v":1,"seq":0,"t":1,"kind":"progress","step":"1"}', "non-negative integer step"),
    (b'{"v":1,"seq":0,"t":1,"kind":"metrics","step":1,"values":[1]}', "values must be"),
    (b'{"v":1,"seq":0,"t":1,"kind":"lora","step":1,"layers":[]}', "layers must be"),
    (b'{"v":1,"seq":0,"t":1,"kind":"lora","step":1,"layers":{"a":1}}', "layer norms must be"),
    (b'{"v":1,"seq":0,"t":1,"kind":"end","status":"done"}', "unknown end status"),
    (b'{"v":1,"seq":0,"t":1,"kind":"checkpoint","step":1,"path":5}', "path must be"),
    (b"[" * 100000 + b"]" * 100000, "nesting too deep"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_bad_lines_raise_format_error(line: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decode_line(line)


def test_lines_over_one_mib_are_refused_as_bytes_and_str() -> None:
    big = encode_line(_event("metrics", step=1, values={"x" * (1 << 20): 1.0}))
    assert len(big) > mc.MAX_LINE_BYTES
    with pytest.raises(FormatError, match="longer than 1 MiB"):
        decode_line(big)
    with pytest.raises(FormatError, match="longer than 1 MiB"):
        decode_line(big.decode())


def test_encode_refuses_a_bare_nan_outside_the_number_fields() -> None:
    with pytest.raises(ValueError):
        encode_line(_event("start", extra=math.nan))


def test_encode_line_builds_no_encoder_per_line(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    init = json.JSONEncoder.__init__

    def counting_init(self: json.JSONEncoder, *args: object, **kwargs: object) -> None:
        built.append(1)
        init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(json.JSONEncoder, "__init__", counting_init)
    for i in range(10):
        encode_line(_event("metrics", step=i, values={"loss": 0.5, "nan": math.nan}))
    assert built == []
