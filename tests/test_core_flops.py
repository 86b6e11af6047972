"""Training FLOPs per token against hand-computed values and published figures."""

from __future__ import annotations

import math
from typing import Any

import pytest

from mudpuppy_monitor.core.flops import ModelShape, mfu, training_flops_per_token

# Llama-2-7B: 32 layers, d=4096, SwiGLU MLP 11008, 32 heads of 128, vocab 32000, untied head.
L, D, FFN, V, HEADS = 32, 4096, 11008, 32000, 32
PER_LAYER = 4 * D * D + 3 * D * FFN + 2 * D  # q,k,v,o + gate,up,down + two RMSNorms
EMBED = V * D
TOTAL_7B = L * PER_LAYER + EMBED + V * D + D  # layers, embedding, head, final norm


def llama7b(**kw: Any) -> ModelShape:
    base: dict[str, Any] = dict(
        params_total=TOTAL_7B,
        params_trainable=TOTAL_7B,
        params_embedding=EMBED,
        embedding_trainable=True,
        tied_embeddings=False,
        num_layers=L,
        hidden_size=D,
        num_attention_heads=HEADS,
        head_dim=D // HEADS,
        seq_len=4096,
    )
    base.update(kw)
    return ModelShape(**base)


def test_llama_7b_config_adds_up_to_its_published_size() -> None:
    assert TOTAL_7B == 6_738_415_616  # "Llama-2-7b": 6.74B parameters


def test_full_fine_tune_of_llama_7b() -> None:
    est = training_flops_per_token(llama7b())
    # 6 x (every parameter but the embedding lookup) + 12 x layers x width x tokens
    dense = 6 * 6_607_343_616
    attention = 12 * 32 * 4096 * 4096
    assert (est.dense_flops_per_token, est.attention_flops_per_token) == (dense, attention)
    assert est.flops_per_token == 46_086_512_640
    assert est.complete and est.reason is None
    assert (est.params_trainable_matmul, est.params_frozen_matmul) == (6_607_343_616, 0)


def test_lora_on_llama_7b_counts_the_frozen_base_at_four_flops_per_parameter() -> None:
    lora = 4 * L * (16 * D + D * 16)  # r=16 on q,k,v,o: A (r x d) + B (d x r) per module
    assert lora == 16_777_216
    shape = llama7b(
        params_total=TOTAL_7B + lora,
        params_trainable=lora,
        embedding_trainable=False,
    )
    est = training_flops_per_token(shape)
    frozen = TOTAL_7B - EMBED  # the base without its embedding lookup
    assert est.params_frozen_matmul == frozen == 6_607_343_616
    assert est.params_trainable_matmul == lora
    # forward + input gradient of the base (no weight gradient), all three passes of the adapters
    assert est.flops_per_token == 6 * lora + 4 * frozen + 12 * 32 * 4096 * 4096
    assert est.flops_per_token == 32_972_488_704
    assert any("4 per parameter" in n for n in est.notes)


def test_unused_parameters_cost_nothing() -> None:
    # peft's modules_to_save keeps the original head frozen and unused next to a trainable copy
    head = V * D
    shape = llama7b(params_total=TOTAL_7B + head, params_trainable=head, embedding_trainable=False,
                    params_unused=head)  # fmt: skip
    est = training_flops_per_token(shape)
    assert est.params_trainable_matmul == head
    assert est.params_frozen_matmul == TOTAL_7B - head - EMBED


def test_a_tied_embedding_is_counted_once_as_the_output_head() -> None:
    shape = llama7b(params_total=TOTAL_7B - V * D, params_trainable=TOTAL_7B - V * D,
                    tied_embeddings=True)  # fmt: skip
    est = training_flops_per_token(shape)
    assert est.params_trainable_matmul == TOTAL_7B - V * D  # the table is the head's matmul


def test_palm_540b_reported_mfu() -> None:
    """PaLM (Chowdhery et al. 2022, appendix B): 540.35B parameters, 118 layers, 48 heads of
    256, 2048-token sequences, shared input/output embeddings; 238.3K tokens/s on 6144 TPU v4
    chips of 275 TFLOPS bf16 peak is reported as 46.2% MFU."""
    shape = ModelShape(
        params_total=540_350_000_000,
        params_trainable=540_350_000_000,
        tied_embeddings=True,
        num_layers=118,
        num_attention_heads=48,
        head_dim=256,
        seq_len=2048,
    )
    est = training_flops_per_token(shape)
    assert est.flops_per_token is not None
    assert est.flops_per_token == 6 * 540.35e9 + 12 * 118 * 48 * 256 * 2048
    value = mfu(238.3e3, est.flops_per_token, 275e12, 6144)
    assert value is not None and round(value, 3) == 0.462


def test_megatron_gpt_formula() -> None:
    """Korthikanti et al. 2022 / Megatron-LM: model FLOPs per iteration of a GPT with tied
    embeddings = 72 B s l h^2 (1 + s/(6h) + V/(12 l h)); per token divide by B s."""
    layers, h, s, vocab = 96, 12288, 2048, 51200  # GPT-3 175B
    shape = ModelShape(
        params_total=12 * layers * h * h + vocab * h,  # matmul weights only, tied head
        params_trainable=12 * layers * h * h + vocab * h,
        tied_embeddings=True,
        num_layers=layers,
        hidden_size=h,
        num_attention_heads=96,
        head_dim=128,
        seq_len=s,
    )
    expected = 72 * layers * h**2 * (1 + s / (6 * h) + vocab / (12 * layers * h))
    assert training_flops_per_token(shape).flops_per_token == pytest.approx(expected, rel=1e-12)


def test_megatron_lm_gqa_swiglu_formula() -> None:
    """Megatron-LM's num_floating_point_operations for a Llama-style model (GQA, SwiGLU), per
    token: 12 l h^2 (1 + g/a + (f/h)(3/2) + s/h + V/(2 l h)). Llama-3-8B shape, no norms."""
    layers, h, f, vocab, heads, groups, s = 32, 4096, 14336, 128256, 32, 8, 8192
    kv = h * groups // heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * f  # q,o + k,v + gate,up,down
    n = layers * per_layer + 2 * vocab * h  # untied embedding and head
    shape = ModelShape(
        params_total=n,
        params_trainable=n,
        params_embedding=vocab * h,
        embedding_trainable=True,
        tied_embeddings=False,
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=groups,
        head_dim=h // heads,
        seq_len=s,
    )
    expected = (
        12
        * layers
        * h
        * h
        * (1 + groups / heads + (f / h) * 1.5 + s / h + vocab / (2 * layers * h))
    )
    assert training_flops_per_token(shape).flops_per_token == pytest.approx(expected, rel=1e-12)


def test_unknown_sequence_length_leaves_attention_out_and_says_so() -> None:
    est = training_flops_per_token(llama7b(seq_len=None))
    assert est.attention_flops_per_token is None and not est.complete
    assert est.flops_per_token == 6 * 6_607_343_616
    assert any("sequence length unknown" in n for n in est.notes)
    # a length derived elsewhere (tokens per sample) completes it
    est = training_flops_per_token(llama7b(seq_len=None), seq_len=1024)
    assert est.complete and est.attention_flops_per_token == 12 * 32 * 4096 * 1024


def test_width_falls_back_to_the_hidden_size_with_a_note() -> None:
    est = training_flops_per_token(llama7b(num_attention_heads=None, head_dim=None))
    assert est.attention_flops_per_token == 12 * 32 * 4096 * 4096
    assert any("hidden size" in n for n in est.notes)
    est = training_flops_per_token(
        llama7b(num_attention_heads=None, head_dim=None, hidden_size=None)
    )
    assert not est.complete and est.attention_flops_per_token is None


def test_unknown_embedding_is_counted_with_a_note() -> None:
    est = training_flops_per_token(llama7b(params_embedding=None))
    assert est.params_trainable_matmul == TOTAL_7B
    assert any("embedding size unknown" in n for n in est.notes)


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        (ModelShape(), "parameter counts unknown"),
        (ModelShape(params_total=10, params_trainable=11), "inconsistent"),
        (ModelShape(params_total=10, params_trainable=5, params_unused=6), "inconsistent"),
    ],
)
def test_no_estimate_without_consistent_counts(shape: ModelShape, reason: str) -> None:
    est = training_flops_per_token(shape)
    assert est.flops_per_token is None and not est.complete
    assert est.reason is not None and reason in est.reason


def test_shape_from_meta_validates_every_field() -> None:
    meta = {
        "config": {"method": "lora"},
        "model_shape": {
            "params_total": 1000.0,  # a float that is an integer is a count
            "params_trainable": 0,
            "params_embedding": -5,
            "embedding_trainable": "yes",
            "tied_embeddings": True,
            "params_unused": "NaN",
            "num_layers": True,
            "hidden_size": math.nan,
            "num_attention_heads": "32",
            "head_dim": 1.5,
            "seq_len": 2048,
        },
    }
    shape = ModelShape.from_meta(meta)
    assert shape == ModelShape(
        params_total=1000, params_trainable=0, tied_embeddings=True, seq_len=2048, method="lora"
    )


def test_shape_from_older_meta_uses_the_config_counts() -> None:
    meta = {"config": {"total_params": 500, "trainable_params": 20, "method": "lora"}}
    assert ModelShape.from_meta(meta) == ModelShape(
        params_total=500, params_trainable=20, method="lora"
    )
    assert ModelShape.from_meta({"config": {"total_params": "many"}}) is None
    assert ModelShape.from_meta({"config": "garbage", "model_shape": [1, 2]}) is None
    assert ModelShape.from_meta({}) is None


@pytest.mark.parametrize(
    "args",
    [
        (0.0, 1e9, 1e12, 1),
        (100.0, math.nan, 1e12, 1),
        (100.0, 1e9, math.inf, 1),
        (100.0, 1e9, 1e12, 0),
        (100.0, 1e9, 1e12, True),
        (-1.0, 1e9, 1e12, 1),
    ],
)
def test_mfu_is_none_for_unusable_inputs(args: tuple[Any, ...]) -> None:
    assert mfu(*args) is None


def test_mfu_divides_by_every_device() -> None:
    assert mfu(1000.0, 1e9, 1e12, 4) == pytest.approx(1000 * 1e9 / 4e12)
