"""A tiny real fine-tune: a random 2-layer Llama-style model, a peft LoRA, synthetic tokens, CPU.

Used by the tests, the demo and the benchmarks. Nothing is downloaded; 20 steps take seconds.

    python -m mudpuppy_monitor.tinytrain --root runs --name tiny --steps 20 --lr 1e-3
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

VOCAB = 128
SEQ_LEN = 16
DATASET_SIZE = 256
EVAL_SIZE = 32


class _SyntheticTokens:
    """Learnable sequences: each row counts up from a random start with a random stride."""

    def __init__(self, size: int, seed: int) -> None:
        import torch

        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, VOCAB, (size, 1), generator=g)
        stride = torch.randint(1, 4, (size, 1), generator=g)
        self.ids = (start + stride * torch.arange(SEQ_LEN)) % VOCAB

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        ids = self.ids[i]
        return {"input_ids": ids, "labels": ids.clone(), "attention_mask": ids.new_ones(SEQ_LEN)}


def _step_delay_callback(delay_s: float) -> Any:
    from transformers import TrainerCallback

    class StepDelay(TrainerCallback):
        # Stretches a run so that a demo can be watched live.
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            time.sleep(delay_s)

    return StepDelay()


# A tiny character-level chat format for the tiny tokenizer (a Jinja template, as on the Hub).
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def build_tiny_tokenizer(*, chat_template: bool = True) -> Any:
    """A character-level tokenizer built locally: printable ASCII and newline, plus <pad>, <s>,
    </s>, <unk>; 100 ids, all within the tiny model's vocabulary."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {token: i for i, token in enumerate(specials + chars)}
    assert len(vocab) <= VOCAB
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()  # characters join without spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    if chat_template:
        tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(*, lora: bool = True, seed: int = 0, lora_dropout: float = 0.0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config)
    if not lora:
        return model
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        lora_dropout=lora_dropout,
        task_type="CAUSAL_LM",
        # A trainable output head lets the loss fall visibly within a few hundred steps; the
        # adapters (and so the `lora` events) stay on q_proj/v_proj only.
        modules_to_save=["lm_head"],
    )
    return get_peft_model(model, lora_config)


def build_tiny_trainer(
    root: str | os.PathLike[str],
    name: str,
    *,
    steps: int = 20,
    lr: float = 1e-3,
    eval_every: int | None = None,
    save_every: int | None = None,
    lora: bool = True,
    logging_steps: int = 1,
    lora_every: int = 5,
    seed: int = 0,
    callback_kwargs: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    step_delay_s: float = 0.0,
    extra_callbacks: Sequence[Any] = (),
    lora_dropout: float = 0.0,
    processing_class: Any = None,
) -> Any:
    """A ready `transformers.Trainer` that records into `<root>/<name>` via MonitorCallback.

    `output_dir` (checkpoints) defaults to a fresh temporary directory outside `root`, so the
    monitor does not also discover the checkpoints as an HF output directory. That directory
    belongs to the trainer: it is removed when the trainer is garbage-collected, or at
    interpreter exit at the latest. A given `output_dir` belongs to the caller and is kept.
    `processing_class` (e.g. `build_tiny_tokenizer()`) is what sampling generates with.
    """
    from mudpuppy_callback import MonitorCallback
    from transformers import PrinterCallback, Trainer, TrainingArguments, default_data_collator

    temporary = None
    if output_dir is None:
        output_dir = temporary = tempfile.mkdtemp(prefix="mudpuppy-tiny-")
    model = build_tiny_model(lora=lora, seed=seed, lora_dropout=lora_dropout)
    args = TrainingArguments(
        output_dir=os.fspath(output_dir),
        max_steps=steps,
        learning_rate=lr,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        logging_steps=logging_steps,
        eval_strategy="steps" if eval_every else "no",
        eval_steps=eval_every,
        save_strategy="steps" if save_every else "no",
        save_steps=save_every or 500,
        save_only_model=True,
        warmup_steps=2,
        lr_scheduler_type="linear",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=seed,
        include_num_input_tokens_seen="all",
    )
    callbacks: list[Any] = [
        MonitorCallback(root, name=name, lora_every=lora_every, **(callback_kwargs or {}))
    ]
    if step_delay_s > 0:
        callbacks.append(_step_delay_callback(step_delay_s))
    callbacks.extend(extra_callbacks)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_SyntheticTokens(DATASET_SIZE, seed),
        eval_dataset=_SyntheticTokens(EVAL_SIZE, seed + 1) if eval_every else None,
        callbacks=callbacks,
        processing_class=processing_class,
        # the rows are already tensors of one length: with a tokenizer the Trainer would
        # otherwise switch to padding them
        data_collator=default_data_collator,
    )
    # With the progress bar off, transformers prints every log dict; the run dir has them.
    trainer.remove_callback(PrinterCallback)
    if temporary is not None:
        # Not at the end of train(): checkpoints stay readable while the trainer is in use.
        weakref.finalize(trainer, shutil.rmtree, temporary, ignore_errors=True)
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mudpuppy_monitor.tinytrain",
        description="A tiny real LoRA fine-tune on CPU (random weights, no downloads).",
    )
    parser.add_argument("--root", required=True, help="runs root directory")
    parser.add_argument("--name", required=True, help="run name")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--save-every", type=int, default=None)
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds to sleep per step")
    parser.add_argument("--lora-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None, help="checkpoints (default: a temp dir)")
    parser.add_argument("--no-lora", action="store_true", help="full fine-tune instead of LoRA")
    ns = parser.parse_args(argv)
    _quiet_libraries()
    trainer = build_tiny_trainer(
        ns.root,
        ns.name,
        steps=ns.steps,
        lr=ns.lr,
        eval_every=ns.eval_every,
        save_every=ns.save_every,
        lora=not ns.no_lora,
        lora_every=ns.lora_every,
        seed=ns.seed,
        output_dir=ns.output_dir,  # None: a temporary directory, removed with the trainer
        step_delay_s=ns.step_delay,
    )
    trainer.train()
    return 0


def _quiet_libraries() -> None:
    # The CLI runs as a background job of the demo: keep its output to what matters.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
