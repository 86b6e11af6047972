"""Config comparison: a run's config flattened to dotted keys, and the keys that differ between runs.

Pure functions over plain data (the `config` dict of `meta.json`); the Monitor answers
`config_diff()` with them under its lock, the server, the terminal table and the snapshot show
the result. The rules (docs/core.md, "Config diff"):

- nested dicts become dotted keys (`{"lora": {"r": 16}}` -> `lora.r`); lists, numbers, strings,
  booleans and null are values; an empty dict is the value `{}`;
- a key differs when some run lacks it or holds another value; 1 and 1.0 are the same number,
  `true` is not `1`, and NaN equals NaN (two runs that both logged NaN agree);
- bounded: at most MAX_KEYS keys per run and MAX_DEPTH levels (deeper dicts stay whole values),
  strings longer than MAX_TEXT are cut and say so. A meta.json is untrusted input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

MAX_KEYS = 1000
MAX_DEPTH = 10
MAX_TEXT = 1000


def config_of(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `config` of a run's meta, or an empty one when absent or not an object."""
    config = meta.get("config")
    return config if isinstance(config, Mapping) else {}


def flatten_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """{dotted key: value}, in the config's own order, bounded (see the module doc)."""
    out: dict[str, Any] = {}
    _flatten(config, "", 0, out)
    return out


def _flatten(node: Mapping[str, Any], prefix: str, depth: int, out: dict[str, Any]) -> None:
    for key, value in node.items():
        if len(out) >= MAX_KEYS:
            return
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and depth + 1 < MAX_DEPTH:
            _flatten(value, name + ".", depth + 1, out)
        else:
            out[name] = _bounded(value)


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return f"{value[:MAX_TEXT]}… ({len(value)} characters)"
    if isinstance(value, Mapping):
        return dict(value)
    return value


def canonical(value: Any) -> Any:
    """A hashable form under which equal config values are equal (see the module doc)."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, (int, float)):
        x = float(value)
        return ("n", "nan" if math.isnan(x) else x)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, (list, tuple)):
        return ("l", tuple(canonical(v) for v in value))
    if isinstance(value, Mapping):
        return ("d", tuple(sorted((str(k), canonical(v)) for k, v in value.items())))
    return ("o", repr(value))


_ABSENT = ("absent",)


def differing_keys(flat: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The keys, sorted, whose value is not the same in every run of `flat` ({run: {key: v}})."""
    runs = list(flat.values())
    if len(runs) < 2:
        return []
    keys: set[str] = set()
    for values in runs:
        keys.update(values)
    out = []
    for key in keys:
        seen = {canonical(values[key]) if key in values else _ABSENT for values in runs}
        if len(seen) > 1:
            out.append(key)
    return sorted(out)


def config_diff(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """{"keys": [differing dotted keys], "values": {run: {key: value}}} for {run: config}.

    `values` holds every flattened key of each run (not only the differing ones), so a client
    can show the whole config or compare any subset of the runs itself.
    """
    flat = {run: flatten_config(cfg) for run, cfg in configs.items()}
    return {"keys": differing_keys(flat), "values": flat}


def split_ids(text: str | None) -> list[str] | None:
    """A comma-separated list of run ids (None: all runs); blank entries are dropped."""
    if text is None:
        return None
    return [part for part in (p.strip() for p in text.split(",")) if part]


def value_text(value: Any, width: int = 40) -> str:
    """A config value in one short line (tables): numbers as Python writes them, JSON-like
    lists and dicts, cut to `width` characters."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(value_text(v, width) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k}: {value_text(v, width)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def pick(ids: Iterable[str], known: Iterable[str]) -> tuple[list[str], list[str]]:
    """(ids that are known, ids that are not), in the order asked, without repeats."""
    have = set(known)
    ok: list[str] = []
    missing: list[str] = []
    for run_id in dict.fromkeys(ids):
        (ok if run_id in have else missing).append(run_id)
    return ok, missing
