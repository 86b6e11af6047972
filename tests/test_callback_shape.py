"""meta `model_shape` from a real transformers.Trainer with a real peft LoRA (tiny, random, CPU),
and the FLOPs per token the daemon derives from it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mudpuppy_callback as mc
import pytest
from mudpuppy_callback import MonitorWarning

from mudpuppy_monitor.core.flops import ModelShape, training_flops_per_token
from mudpuppy_monitor.tinytrain import build_tiny_trainer

# The tiny model (mudpuppy_monitor.tinytrain): Llama, 2 layers, hidden 32, MLP 64, 4 heads of 8,
# vocabulary 128, untied head, 16-token sequences; LoRA r=4 on q_proj and v_proj, plus a
# trainable copy of lm_head (peft modules_to_save keeps the original, frozen and unused).
EMBED = 128 * 32
HEAD = 128 * 32
LAYER = 4 * 32 * 32 + 3 * 32 * 64 + 2 * 32  # q,k,v,o + gate,up,down + two RMSNorms
BASE = EMBED + 2 * LAYER + 32 + HEAD  # + final norm
LORA = 2 * 2 * (4 * 32 + 32 * 4)  # layers x modules x (A + B)


def _train(tmp_path: Path, name: str, **kw: Any) -> dict[str, Any]:
    trainer = build_tiny_trainer(tmp_path / "runs", name, steps=2, output_dir=tmp_path / "o", **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    meta = json.loads((tmp_path / "runs" / name / "meta.json").read_text())
    meta["_warnings"] = [str(w.message) for w in caught if issubclass(w.category, MonitorWarning)]
    return meta


@pytest.fixture(scope="module")
def lora_meta(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _train(tmp_path_factory.mktemp("lora"), "lora")


@pytest.fixture(scope="module")
def full_meta(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _train(tmp_path_factory.mktemp("full"), "full", lora=False)


def test_lora_run_records_its_shape(lora_meta: dict[str, Any]) -> None:
    assert BASE == 28832
    assert lora_meta["model_shape"] == {
        "model_type": "llama",
        "num_layers": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "vocab_size": 128,
        "num_attention_heads": 4,
        "num_kv_heads": 4,
        "head_dim": 8,
        "params_total": BASE + LORA + HEAD,  # peft counts the original head and its copy
        "params_trainable": LORA + HEAD,
        "params_frozen": BASE,
        "params_embedding": EMBED,
        "embedding_trainable": False,
        "tied_embeddings": False,
        "params_unused": HEAD,  # the original head: frozen, never called
        "method": "lora",
        "frozen_base": True,
        "seq_len": 16,
        "seq_len_source": "dataset",
        "max_seq_len": None,
    }
    assert lora_meta["_warnings"] == []
    # the config keeps its two counts, the same numbers
    assert lora_meta["config"]["total_params"] == lora_meta["model_shape"]["params_total"]


def test_full_run_records_its_shape(full_meta: dict[str, Any]) -> None:
    shape = full_meta["model_shape"]
    assert (shape["params_total"], shape["params_trainable"], shape["params_frozen"]) == (
        BASE,
        BASE,
        0,
    )
    assert (shape["method"], shape["frozen_base"], shape["params_unused"]) == ("full", False, 0)
    assert (shape["params_embedding"], shape["embedding_trainable"]) == (EMBED, True)


def test_flops_per_token_from_the_recorded_meta(
    lora_meta: dict[str, Any], full_meta: dict[str, Any]
) -> None:
    attention = 12 * 2 * (4 * 8) * 16  # layers x query width x sequence length
    # LoRA: the adapters and the head copy train (6 each); the base without its embedding lookup
    # runs forward and input-gradient passes (4 each); the unused original head costs nothing
    lora = training_flops_per_token(ModelShape.from_meta(lora_meta))  # type: ignore[arg-type]
    assert lora.params_trainable_matmul == LORA + HEAD
    assert lora.params_frozen_matmul == BASE - HEAD - EMBED
    assert lora.flops_per_token == 6 * (LORA + HEAD) + 4 * (BASE - HEAD - EMBED) + attention
    assert lora.flops_per_token == 125_568 and lora.complete
    # full fine-tune: 6 x every matmul parameter
    full = training_flops_per_token(ModelShape.from_meta(full_meta))  # type: ignore[arg-type]
    assert full.flops_per_token == 6 * (BASE - EMBED) + attention == 160_704


def test_a_shape_that_cannot_be_read_costs_one_warning_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise RuntimeError("odd model")

    monkeypatch.setattr(mc, "_model_shape", broken)
    meta = _train(tmp_path, "odd")
    assert "model_shape" not in meta
    assert meta["config"]["method"] == "lora"
    assert meta["_warnings"] == [
        "mudpuppy: model shape not recorded (RuntimeError: odd model); no FLOPs estimate"
    ]
    events = (tmp_path / "runs" / "odd" / "events.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["status"] == "completed"


def test_tied_embeddings_and_grouped_query_attention() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    args = SimpleNamespace(max_length=512)
    shape = mc._model_shape(args, model, None, {"method": "full"})
    assert (shape["tied_embeddings"], shape["num_kv_heads"], shape["max_seq_len"]) == (True, 2, 512)
    assert shape["params_total"] == sum(p.numel() for p in model.parameters())  # counted once
    assert (shape["seq_len"], shape["seq_len_source"]) == (None, None)


def test_sequence_length_only_when_the_examples_agree() -> None:
    from torch.utils.data import DataLoader, IterableDataset

    def loader(items: list[Any]) -> DataLoader:
        return DataLoader(items, batch_size=2)  # type: ignore[arg-type]

    assert mc._uniform_seq_len(loader([{"input_ids": [1, 2, 3]}] * 5)) == 3
    assert mc._uniform_seq_len(loader([{"input_ids": [1, 2, 3]}, {"input_ids": [1]}])) is None
    assert mc._uniform_seq_len(loader([{"text": "no ids"}])) is None
    assert mc._uniform_seq_len(loader([[1, 2, 3]])) is None
    assert mc._uniform_seq_len(loader([{"input_ids": []}])) is None
    assert mc._uniform_seq_len(None) is None

    class Stream(IterableDataset):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            yield {"input_ids": [1, 2]}

    assert mc._uniform_seq_len(DataLoader(Stream())) is None


def test_sequence_length_argument_names() -> None:
    assert (
        mc._first_positive_int(
            SimpleNamespace(max_seq_length=2048), ("max_length", "max_seq_length")
        )
        == 2048
    )
    assert (
        mc._first_positive_int(
            SimpleNamespace(max_length=None, max_seq_length=0), ("max_length", "max_seq_length")
        )
        is None
    )
    assert mc._first_positive_int(SimpleNamespace(max_length=True), ("max_length",)) is None
