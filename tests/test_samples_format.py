"""The `samples` event kind: encoding, decoding, RunWriter.log_samples, prompt files, and the
daemon reading runs that hold it."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import mudpuppy_callback as mc
import numpy as np
import pytest
from mudpuppy_callback import FormatError, MonitorWarning, RunWriter, decode_line, encode_line

from mudpuppy_monitor.core import Monitor


def strict_lines(run_dir: Path) -> list[dict[str, Any]]:
    """Every line of events.jsonl through a parser that refuses bare NaN/Infinity."""

    def reject(token: str) -> Any:
        raise ValueError(f"bare {token} is not JSON")

    data = (run_dir / "events.jsonl").read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line, parse_constant=reject) for line in data.split(b"\n")[:-1]]


def samples_events(run_dir: Path) -> list[dict[str, Any]]:
    events = [decode_line(line) for line in (run_dir / "events.jsonl").read_bytes().splitlines()]
    return [e for e in events if e["kind"] == "samples"]


def _warnings(records: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in records if issubclass(w.category, MonitorWarning)]


# -- format ------------------------------------------------------------------------------------


def test_samples_is_a_step_kind_of_format_v1() -> None:
    assert "samples" in mc.KINDS and "samples" in mc.STEP_KINDS
    assert (mc.MAX_SAMPLE_TEXT_BYTES, mc.MAX_SAMPLE_ITEMS) == (8192, 64)


def test_samples_line_round_trips_through_encode_and_decode() -> None:
    event = {
        "v": 1,
        "seq": 4,
        "t": 1700000000.5,
        "kind": "samples",
        "step": 50,
        "items": [
            {"prompt": "2+2=", "completion": " 4", "reference": "4", "score": 1.0},
            {"prompt": "Hi", "completion": "", "truncated": {"completion": 9000}},
        ],
        "took_s": 0.25,
    }
    line = encode_line(event)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert decode_line(line) == event


def test_decoding_keeps_good_items_and_drops_bad_ones() -> None:
    line = json.dumps(
        {
            "v": 1,
            "seq": 0,
            "t": 1,
            "kind": "samples",
            "step": 5,
            "items": [
                {"prompt": "a", "completion": "b", "score": "NaN", "tokens": 3},
                {"prompt": "a"},  # no completion
                {"prompt": 1, "completion": "b"},
                "text",
                {"prompt": "c", "completion": "d", "reference": 5, "score": True},
                {"prompt": "e", "completion": "f", "truncated": {"prompt": -1, "x": 3}},
                {"prompt": "g", "completion": "h", "truncated": {"completion": 9000, "x": 3}},
            ],
            "took_s": "slow",
        }
    )
    event = decode_line(line)
    items = event["items"]
    assert math.isnan(items[0].pop("score"))
    assert items == [
        {"prompt": "a", "completion": "b", "tokens": 3},  # unknown fields are kept
        {"prompt": "c", "completion": "d"},
        {"prompt": "e", "completion": "f"},
        {"prompt": "g", "completion": "h", "truncated": {"completion": 9000}},
    ]
    assert "took_s" not in event


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"v":1,"seq":0,"t":1,"kind":"samples","items":[]}', "non-negative integer step"),
        (b'{"v":1,"seq":0,"t":1,"kind":"samples","step":1}', "items must be an array"),
        (b'{"v":1,"seq":0,"t":1,"kind":"samples","step":1,"items":{}}', "items must be an array"),
    ],
)
def test_bad_samples_lines_raise_format_error(line: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decode_line(line)


# -- writer ------------------------------------------------------------------------------------


def test_log_samples_writes_one_strict_line_read_back_by_the_decoder(tmp_path: Path) -> None:
    import torch

    items = [
        {"prompt": "Say hi", "completion": "hi", "reference": "hello", "score": np.float32(0.5)},
        {"prompt": "<img src=x onerror=alert(1)>", "completion": 'a\nb\t"c"\x00', "score": None},
        {"prompt": "nan?", "completion": "", "score": torch.tensor(math.nan)},
        {"prompt": "ünï\u2028", "completion": "🦎" * 3},
    ]
    with RunWriter(tmp_path, name="r") as run:
        assert run.log_samples(10, items, took_s=np.float64(1.5)) is True
        assert run.log_samples(11, items[:1]) is True  # took_s is optional
    lines = strict_lines(run.dir)
    assert [line["kind"] for line in lines] == ["start", "samples", "samples", "end"]
    assert lines[1]["items"][2]["score"] == "NaN"  # a string, never a bare NaN token
    events = samples_events(run.dir)
    assert (events[0]["step"], events[0]["took_s"]) == (10, 1.5)
    assert "took_s" not in events[1]
    got = events[0]["items"]
    assert math.isnan(got[2].pop("score"))
    assert got == [
        {"prompt": "Say hi", "completion": "hi", "reference": "hello", "score": 0.5},
        {"prompt": "<img src=x onerror=alert(1)>", "completion": 'a\nb\t"c"\x00'},
        {"prompt": "nan?", "completion": ""},
        {"prompt": "ünï\u2028", "completion": "🦎" * 3},
    ]


def test_a_one_megabyte_completion_is_cut_to_8_kib_and_marked(tmp_path: Path) -> None:
    # "a" then 2-byte characters: byte 8192 falls inside a character, which must not be split
    completion = "a" + "é" * (1 << 19)
    full = len(completion.encode())
    assert full > 1 << 20
    with RunWriter(tmp_path, name="r") as run:
        assert run.log_samples(1, [{"prompt": "p", "completion": completion}], took_s=2.0)
        assert run.log(2, {"loss": 1.0})
    lines = strict_lines(run.dir)  # every line strict JSON, one object per line
    assert [line["kind"] for line in lines] == ["start", "samples", "metrics", "end"]
    [item] = samples_events(run.dir)[0]["items"]
    assert item["completion"] == "a" + "é" * 4095  # 8191 bytes: the split character is left out
    assert len(item["completion"].encode()) == 8191
    assert completion.startswith(item["completion"])
    assert item["truncated"] == {"completion": full}
    assert item["prompt"] == "p"


def test_texts_at_the_limit_are_not_marked(tmp_path: Path) -> None:
    exact = "x" * mc.MAX_SAMPLE_TEXT_BYTES
    with RunWriter(tmp_path, name="r") as run:
        run.log_samples(1, [{"prompt": exact, "completion": exact + "y", "reference": exact}])
    [item] = samples_events(run.dir)[0]["items"]
    assert item["prompt"] == exact and item["reference"] == exact
    assert item["completion"] == exact
    assert item["truncated"] == {"completion": mc.MAX_SAMPLE_TEXT_BYTES + 1}


def test_an_event_that_would_pass_one_mib_gets_a_smaller_cap_and_is_written(
    tmp_path: Path,
) -> None:
    # 64 items of three 100 KB texts of control characters, each escaped as 6 bytes in JSON
    text = "\x01" * 100_000
    items = [{"prompt": text, "completion": text, "reference": text}] * mc.MAX_SAMPLE_ITEMS
    with RunWriter(tmp_path, name="r") as run:
        assert run.log_samples(3, items) is True
    size = len((run.dir / "events.jsonl").read_bytes().splitlines()[1])
    assert size <= mc.MAX_LINE_BYTES
    got = samples_events(run.dir)[0]["items"]
    assert len(got) == mc.MAX_SAMPLE_ITEMS
    lengths = {len(item[f]) for item in got for f in ("prompt", "completion", "reference")}
    assert len(lengths) == 1 and lengths.pop() < mc.MAX_SAMPLE_TEXT_BYTES
    assert all(
        item["truncated"] == {"prompt": 100_000, "completion": 100_000, "reference": 100_000}
        for item in got
    )


def test_more_than_64_items_keep_the_first_64_with_one_warning(tmp_path: Path) -> None:
    items = [{"prompt": str(i), "completion": "c"} for i in range(100)]
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        with RunWriter(tmp_path, name="r") as run:
            assert run.log_samples(1, iter(items))
            assert run.log_samples(2, items)
    assert len(_warnings(records)) == 1
    for event in samples_events(run.dir):
        assert [i["prompt"] for i in event["items"]] == [str(i) for i in range(64)]


def test_bad_items_are_dropped_with_one_warning_and_nothing_raises(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        with RunWriter(tmp_path, name="r") as run:
            good = {"prompt": "p", "completion": "c", "score": "high"}
            assert run.log_samples(
                1, [good, {"prompt": "p"}, "x", {"prompt": b"p", "completion": ""}]
            )
            assert run.log_samples(2, [{"prompt": None, "completion": "c"}]) is False
            assert run.log_samples(3, []) is False
            assert run.log_samples(4, [good], took_s="long") is True
            assert run.log_samples(-1, [good]) is False  # a bad step is refused, not raised
            assert run.log_samples(5, None) is False  # type: ignore[arg-type]
    messages = _warnings(records)
    assert len([m for m in messages if "string prompt and completion" in m]) == 1
    assert len([m for m in messages if "'score'" in m]) == 1
    assert len([m for m in messages if "'took_s'" in m]) == 1
    events = samples_events(run.dir)
    assert [e["step"] for e in events] == [1, 4]
    assert events[0]["items"] == [{"prompt": "p", "completion": "c"}]


def test_a_lone_surrogate_is_written_as_a_question_mark(tmp_path: Path) -> None:
    with RunWriter(tmp_path, name="r") as run:
        assert run.log_samples(1, [{"prompt": "a\ud800b", "completion": "ok"}])
    assert samples_events(run.dir)[0]["items"][0]["prompt"] == "a?b"


def test_samples_count_as_the_last_step_for_resume(tmp_path: Path) -> None:
    with RunWriter(tmp_path, name="r") as run:
        run.log(4, {"loss": 1.0})
        run.log_samples(5, [{"prompt": "p", "completion": "c"}])
    # a resumed writer continues after the samples line
    with RunWriter(tmp_path, name="r", resume=True) as again:
        pass
    start = strict_lines(again.dir)[4]
    assert (start["kind"], start["resumed_from"], start["seq"]) == ("start", 5, 4)


# -- prompts -----------------------------------------------------------------------------------


def test_prompts_file_one_per_line_blank_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_bytes(
        "\ufeffFirst prompt\r\n\r\n   \n  indented, trailing space \n# not a comment\nlast".encode()
    )
    assert (
        mc._read_prompts(path)
        == mc._read_prompts(str(path))
        == [
            "First prompt",
            "  indented, trailing space ",
            "# not a comment",
            "last",
        ]
    )


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (None, FileNotFoundError, "pass a list for the prompts themselves"),
        (b"\n  \n", ValueError, "holds no prompts"),
        (b"\xff\xfe\x00", ValueError, "not UTF-8"),
        ("\n".join(str(i) for i in range(65)).encode(), ValueError, "at most 64"),
    ],
)
def test_bad_prompts_files_fail_at_construction(
    tmp_path: Path, content: bytes | None, error: type[Exception], message: str
) -> None:
    path = tmp_path / "prompts.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=message):
        mc.MonitorCallback(tmp_path / "runs", sample_prompts=str(path))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"sample_prompts": []}, ValueError, "holds no prompts"),
        ({"sample_prompts": ["ok", " "]}, ValueError, r"sample_prompts\[1\] is blank"),
        ({"sample_prompts": ["ok", 3]}, TypeError, r"sample_prompts\[1\] is a int"),
        ({"sample_prompts": ["ok"], "sample_every": 0}, ValueError, "sample_every"),
        ({"sample_prompts": ["ok"], "sample_every": 2.5}, ValueError, "sample_every"),
        ({"sample_prompts": ["ok"], "sample_max_new_tokens": 0}, ValueError, "max_new_tokens"),
    ],
)
def test_bad_sampling_arguments_fail_at_construction(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        mc.MonitorCallback(tmp_path, **kwargs)


def test_sampling_is_off_by_default(tmp_path: Path) -> None:
    assert mc.MonitorCallback(tmp_path)._sampler is None
    on = mc.MonitorCallback(tmp_path, sample_prompts=("a", "b"), sample_every=7)
    assert (on._sampler.prompts, on._sampler.every, on._sampler.max_new_tokens) == (
        ["a", "b"],
        7,
        64,
    )


# -- the daemon --------------------------------------------------------------------------------


def test_the_daemon_reads_a_run_with_samples_without_bad_lines(tmp_path: Path) -> None:
    big = {"prompt": "p" * 20_000, "completion": "é" * 20_000, "score": math.nan}
    with RunWriter(tmp_path, name="run") as run:
        for step in range(1, 11):
            run.log(step, {"loss": 1.0 / step})
            if step % 5 == 0:
                run.log_samples(step, [big, {"prompt": "q", "completion": "a"}], took_s=0.1)
    mon = Monitor(tmp_path, clock=lambda: 2e9)
    assert mon.refresh() == {"run"}
    summary = mon.summary("run")
    assert summary is not None
    assert summary.bad_lines == 0
    assert (summary.step, summary.status, summary.loss) == (10, "completed", 0.1)
