"""Training FLOPs per token, and model FLOPs utilisation (MFU). Pure functions.

The formula, its sources and what it leaves out are in docs/efficiency.md. In short, per token:

    6 * N_trainable + 4 * N_frozen + 12 * L * (H * d_head) * T

where N are the parameters that take part in matrix multiplies (the input embedding table is a
lookup and does not, unless it is also the output head), a frozen parameter costs its forward
(2) and input-gradient (2) passes but no weight gradient, and the last term is the attention
score and value matmuls over a sequence of T tokens (PaLM, appendix B). A full fine-tune has no
frozen parameters and this is the familiar 6N plus attention.

`ModelShape.from_meta` reads the `model_shape` a MonitorCallback writes into meta.json (validated:
a field that is not a positive count reads as unknown), falling back to the parameter counts in
`config` for runs written before `model_shape` existed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FlopsEstimate", "ModelShape", "mfu", "training_flops_per_token"]


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What the FLOPs count needs from a run's meta. None means unknown."""

    params_total: int | None = None
    params_trainable: int | None = None
    params_embedding: int | None = None  # the input embedding table
    embedding_trainable: bool | None = None
    tied_embeddings: bool | None = None  # the table is also the output head (a matmul)
    params_unused: int = 0  # never used by the forward pass (peft originals, inactive adapters)
    num_layers: int | None = None
    hidden_size: int | None = None
    num_attention_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    intermediate_size: int | None = None
    vocab_size: int | None = None
    seq_len: int | None = None  # tokens per sequence, when every sequence has the same length
    max_seq_len: int | None = None
    method: str | None = None  # "full", "lora", "qlora", ... as the writer named it

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> ModelShape | None:
        """The shape recorded in a run's meta, or None when the meta says nothing usable."""
        raw = meta.get("model_shape") if isinstance(meta, Mapping) else None
        config = meta.get("config") if isinstance(meta, Mapping) else None
        config = config if isinstance(config, Mapping) else {}
        if not isinstance(raw, Mapping):
            # older writers: only the two counts in config
            total = _count(config.get("total_params"))
            trainable = _count(config.get("trainable_params"), allow_zero=True)
            if total is None:
                return None
            return cls(
                params_total=total, params_trainable=trainable, method=_text(config.get("method"))
            )
        return cls(
            params_total=_count(raw.get("params_total")),
            params_trainable=_count(raw.get("params_trainable"), allow_zero=True),
            params_embedding=_count(raw.get("params_embedding")),
            embedding_trainable=_flag(raw.get("embedding_trainable")),
            tied_embeddings=_flag(raw.get("tied_embeddings")),
            params_unused=_count(raw.get("params_unused"), allow_zero=True) or 0,
            num_layers=_count(raw.get("num_layers")),
            hidden_size=_count(raw.get("hidden_size")),
            num_attention_heads=_count(raw.get("num_attention_heads")),
            num_kv_heads=_count(raw.get("num_kv_heads")),
            head_dim=_count(raw.get("head_dim")),
            intermediate_size=_count(raw.get("intermediate_size")),
            vocab_size=_count(raw.get("vocab_size")),
            seq_len=_count(raw.get("seq_len")),
            max_seq_len=_count(raw.get("max_seq_len")),
            method=_text(raw.get("method")) or _text(config.get("method")),
        )


@dataclass(frozen=True, slots=True)
class FlopsEstimate:
    """Training FLOPs per token and how they were counted.

    `flops_per_token` is None only when the parameter counts are unknown (`reason` says why).
    When the attention term cannot be counted (sequence length or layer width unknown) it is
    left out: `complete` is False, `flops_per_token` is a lower bound, and `notes` say so.
    """

    flops_per_token: float | None
    dense_flops_per_token: float | None  # the parameter matmuls
    attention_flops_per_token: float | None  # None when not counted
    params_trainable_matmul: int | None
    params_frozen_matmul: int | None
    seq_len: int | None
    complete: bool
    notes: tuple[str, ...] = ()
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "flops_per_token": self.flops_per_token,
            "dense_flops_per_token": self.dense_flops_per_token,
            "attention_flops_per_token": self.attention_flops_per_token,
            "params_trainable_matmul": self.params_trainable_matmul,
            "params_frozen_matmul": self.params_frozen_matmul,
            "seq_len": self.seq_len,
            "complete": self.complete,
            "notes": list(self.notes),
            "reason": self.reason,
        }


def training_flops_per_token(shape: ModelShape, *, seq_len: int | None = None) -> FlopsEstimate:
    """Model FLOPs of one training token (forward + backward), by the formula in the module
    docstring. `seq_len` overrides the shape's (e.g. one derived from tokens per sample)."""
    total, trainable = shape.params_total, shape.params_trainable
    if total is None or trainable is None:
        return _unknown("parameter counts unknown (the run's meta has no model_shape)")
    if trainable > total:
        return _unknown(f"inconsistent parameter counts: {trainable} trainable of {total}")
    notes: list[str] = []
    frozen = total - trainable - shape.params_unused
    if frozen < 0:
        return _unknown(f"inconsistent parameter counts: {shape.params_unused} unused of {total}")
    trainable_mm, frozen_mm = trainable, frozen
    emb = shape.params_embedding
    if shape.tied_embeddings:
        pass  # the table is the output head: its matmul is counted, its lookup is free
    elif emb is None or shape.embedding_trainable is None:
        notes.append("input embedding size unknown: counted as matmul parameters")
    elif shape.embedding_trainable and emb <= trainable_mm:
        trainable_mm -= emb
    elif not shape.embedding_trainable and emb <= frozen_mm:
        frozen_mm -= emb
    else:
        notes.append("input embedding larger than its parameter group: not subtracted")
    dense = 6.0 * trainable_mm + 4.0 * frozen_mm
    if frozen_mm and trainable_mm:
        notes.append("frozen parameters: forward and input-gradient passes only (4 per parameter)")
    elif frozen_mm and not trainable_mm:
        notes.append("no trainable parameters: every parameter counted as frozen")

    t = seq_len if seq_len is not None and seq_len > 0 else shape.seq_len
    width = _attention_width(shape, notes)
    attention: float | None = None
    if t is None:
        notes.append("sequence length unknown: attention term left out (a lower bound)")
    elif shape.num_layers is None or width is None:
        notes.append(
            "layer count or attention width unknown: attention term left out (a lower bound)"
        )
    else:
        attention = 12.0 * shape.num_layers * width * t
    return FlopsEstimate(
        flops_per_token=dense + (attention or 0.0),
        dense_flops_per_token=dense,
        attention_flops_per_token=attention,
        params_trainable_matmul=trainable_mm,
        params_frozen_matmul=frozen_mm,
        seq_len=t,
        complete=attention is not None,
        notes=tuple(notes),
    )


def mfu(
    tokens_per_s: float, flops_per_token: float, peak_flops_per_device: float, devices: int
) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the devices' summed peak (PaLM's
    definition). None when any input is missing, non-finite or not positive."""
    values = (tokens_per_s, flops_per_token, peak_flops_per_device)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
        return None
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        return None
    return tokens_per_s * flops_per_token / (peak_flops_per_device * devices)


def _attention_width(shape: ModelShape, notes: list[str]) -> int | None:
    """Query heads x head size: the width of the score and value matmuls (key/value heads only
    change the projections, which the parameter count already has)."""
    if shape.num_attention_heads is not None and shape.head_dim is not None:
        return shape.num_attention_heads * shape.head_dim
    if shape.hidden_size is not None:
        notes.append("attention width taken as the hidden size (head size unknown)")
        return shape.hidden_size
    return None


def _unknown(reason: str) -> FlopsEstimate:
    return FlopsEstimate(
        flops_per_token=None,
        dense_flops_per_token=None,
        attention_flops_per_token=None,
        params_trainable_matmul=None,
        params_frozen_matmul=None,
        seq_len=None,
        complete=False,
        reason=reason,
    )


def _count(v: Any, *, allow_zero: bool = False) -> int | None:
    """A parameter or dimension count from JSON: a non-negative integer (a float that is one is
    accepted), else None. Booleans, strings, NaN and negatives are not counts."""
    if isinstance(v, bool):
        return None
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    if not isinstance(v, int):
        return None
    if v > 0 or (allow_zero and v == 0):
        return v
    return None


def _flag(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None
