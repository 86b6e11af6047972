"""Generated samples in the core: written by the real writer, read by the Monitor, held in
bounded memory, asked for by step range and by index."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

from mudpuppy_callback import RunWriter, encode_line

from mudpuppy_monitor.core import Monitor
from mudpuppy_monitor.core.samples import SampleStore, latest_per_prompt

T0 = 1_700_000_000.0


def item(prompt: str, completion: str, **extra: object) -> dict[str, object]:
    return {"prompt": prompt, "completion": completion, **extra}


def write_run(root: Path, name: str = "run", steps: int = 20, every: int = 5) -> Path:
    with RunWriter(root, name=name, clock=lambda: T0) as run:
        for step in range(1, steps + 1):
            run.log(step, {"loss": 1.0 / step})
            if step % every == 0:
                run.log_samples(
                    step,
                    [item("2+2=", f" {step}"), item("<b>hi</b>", "x" * 9000, score=math.nan)],
                    took_s=0.25,
                )
        return Path(run.dir)


def test_every_event_is_held_with_its_items_and_metadata(tmp_path: Path) -> None:
    write_run(tmp_path)
    mon = Monitor(tmp_path, clock=lambda: T0)
    mon.refresh()
    got = mon.samples("run")
    assert got is not None
    assert (got["count"], got["total"], got["generation"]) == (4, 4, mon.generation("run"))
    assert [e["i"] for e in got["events"]] == [0, 1, 2, 3]
    assert [e["step"] for e in got["events"]] == [5, 10, 15, 20]
    first = got["events"][0]
    assert (first["t"], first["took_s"], first["n"]) == (T0, 0.25, 2)
    assert first["items"][0] == {"prompt": "2+2=", "completion": " 5"}
    cut = first["items"][1]
    assert cut["completion"] == "x" * 8192 and cut["truncated"] == {"completion": 9000}
    assert math.isnan(cut["score"])
    detail = mon.detail("run")
    assert detail is not None and detail["samples"] == 4 and detail["bad_lines"] == 0


def test_a_step_range_and_a_limit_pick_the_newest_in_range(tmp_path: Path) -> None:
    write_run(tmp_path, steps=50)
    mon = Monitor(tmp_path, clock=lambda: T0)
    mon.refresh()
    got = mon.samples("run", start=12, end=40, limit=3)
    assert got is not None
    assert got["total"] == 6  # steps 15, 20, ..., 40
    assert [e["step"] for e in got["events"]] == [30, 35, 40]
    assert [e["i"] for e in got["events"]] == [5, 6, 7]
    assert got["count"] == 10
    assert mon.samples("run", start=41, end=44)["events"] == []  # type: ignore[index]
    assert mon.samples("nope") is None


def test_samples_since_an_index_and_the_count_alone(tmp_path: Path) -> None:
    write_run(tmp_path)
    mon = Monitor(tmp_path, clock=lambda: T0)
    mon.refresh()
    gen = mon.generation("run")
    g, i0, events = mon.samples_since("run", 2)
    assert (g, i0, [e["step"] for e in events]) == (gen, 2, [15, 20])
    assert mon.samples_since("run", 0, limit=0)[1:] == (4, [])  # the count only
    g, i0, events = mon.samples_since("run", 0, limit=1)
    assert (i0, [e["i"] for e in events]) == (3, [3])
    assert mon.samples_since("nope", 0) == (-1, 0, [])


def test_samples_arriving_live_and_after_a_reset(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, steps=10)
    mon = Monitor(tmp_path, clock=lambda: T0)
    mon.refresh()
    gen = mon.generation("run")
    with open(run_dir / "events.jsonl", "ab") as f:
        line = {"v": 1, "seq": 99, "t": T0 + 1, "kind": "samples", "step": 11}
        f.write(encode_line({**line, "items": [item("a", "b")]}))
    mon.refresh()
    assert mon.samples_since("run", 2)[1:] == (2, [mon.samples("run")["events"][-1]])  # type: ignore[index]
    assert mon.samples("run")["events"][-1]["took_s"] is None  # type: ignore[index]
    # the file replaced by a shorter one: a new generation, its samples from index 0
    (run_dir / "events.jsonl").write_bytes(
        encode_line({**line, "seq": 0, "step": 1, "items": [item("c", "d")]})
    )
    mon.refresh()
    assert mon.generation("run") != gen
    got = mon.samples("run")
    assert got is not None and got["count"] == 1 and got["events"][0]["items"][0]["prompt"] == "c"


def test_odd_items_keep_the_rest_of_the_event(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    head = '{"v":1,"seq":0,"t":1700000000.0,"kind":"samples","step":3,"items":'
    lines = [
        head + '[{"prompt":"p","completion":"c","extra":{"big":[1,2,3]},"score":"Infinity"},'
        '5,{"prompt":1,"completion":"c"},{"prompt":"q","completion":"r","reference":7}]}',
        head + '"not a list"}',  # bad line
        head + "[]}",  # an event with no valid item is still an event
    ]
    (tmp_path / "run" / "events.jsonl").write_text("\n".join(lines) + "\n")
    mon = Monitor(tmp_path, clock=lambda: 1_700_000_000.0)
    mon.refresh()
    got = mon.samples("run")
    assert got is not None and got["count"] == 2
    items = got["events"][0]["items"]
    # fields the format does not define are not held
    assert items == [
        {"prompt": "p", "completion": "c", "score": math.inf},
        {"prompt": "q", "completion": "r"},
    ]
    assert got["events"][1]["items"] == [] and got["events"][1]["n"] == 0
    assert mon.summary("run").bad_lines == 1  # type: ignore[union-attr]


def test_texts_past_the_budget_thin_out_towards_the_past() -> None:
    store = SampleStore(max_text_bytes=1000)
    for i in range(40):
        store.append(i * 10, T0 + i, 0.1, [item("p", "y" * 99)])  # 100 bytes an event
    assert len(store) == 40 and store.text_bytes <= 1000
    held = sorted(store.held)
    assert held[0] == 0 and held[-1] == 39  # the first and the newest stay
    assert len(held) == store.held_count() and store.released == 40 - len(held)
    gaps = [b - a for a, b in zip(held, held[1:], strict=False)]
    assert gaps == sorted(gaps, reverse=True)  # denser towards the newest
    # every event keeps its metadata; released ones answer items None
    events = store.since(0, None)[1]
    assert [e["step"] for e in events] == [i * 10 for i in range(40)]
    assert all((e["items"] is None) == (e["i"] not in store.held) for e in events)
    assert all(e["n"] == 1 for e in events)


def test_one_event_larger_than_the_budget_is_held_alone() -> None:
    store = SampleStore(max_text_bytes=100)
    store.append(1, T0, None, [item("p", "a" * 50)])
    store.append(2, T0, None, [item("p", "b" * 500)])
    assert list(store.held) == [1] and store.text_bytes == 501


def test_a_repeated_prompt_is_stored_once() -> None:
    store = SampleStore()
    for step in range(3):
        store.append(step, T0, None, [item("same " * 100, str(step))])
    prompts = [store.held[i][0][0]["prompt"] for i in range(3)]
    assert prompts[0] is prompts[1] is prompts[2]


def test_the_store_pickles_for_the_worker_process_attach() -> None:
    store = SampleStore()
    store.append(5, T0, 0.5, [item("p", "c")])
    copy = pickle.loads(pickle.dumps(store))
    assert copy.since(0, None) == store.since(0, None)
    copy.append(6, T0, None, [item("p", "d")])  # still growable
    assert len(copy) == 2


def test_latest_completion_per_prompt() -> None:
    events = [
        {"step": 5, "items": [item("a", "a5"), item("b", "b5"), item("old", "o5")]},
        {"step": 10, "items": None},  # texts released
        {"step": 15, "items": [item("b", "b15"), item("a", "a15")]},
    ]
    got = latest_per_prompt(events)
    assert [(x["prompt"], x["completion"], x["step"]) for x in got] == [
        ("b", "b15", 15),
        ("a", "a15", 15),
        ("old", "o5", 5),
    ]
    assert len(latest_per_prompt(events, max_prompts=1)) == 1
