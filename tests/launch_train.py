"""A fine-tuning script as users write them: a real tiny Trainer with a peft LoRA, and nothing
about monitoring. `mudpuppy-monitor run` tests launch it.

    python tests/launch_train.py OUTPUT_DIR     (environment: STEPS, RESUME_FROM, RAISE_AT,
                                                 EXIT_AT, KILL_AT: see Mishap)
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from transformers import Trainer, TrainerCallback, TrainingArguments

from mudpuppy_monitor.tinytrain import _SyntheticTokens, build_tiny_model


class Mishap(TrainerCallback):
    """Ends the process at a given step the way jobs end badly."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = state.global_step
        if step == int(os.environ.get("RAISE_AT", -1)):
            raise RuntimeError(f"boom at step {step}")
        if step == int(os.environ.get("EXIT_AT", -1)):
            os._exit(3)
        if step == int(os.environ.get("KILL_AT", -1)):
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    print("script starting", flush=True)
    args = TrainingArguments(
        output_dir=sys.argv[1],
        max_steps=int(os.environ.get("STEPS", "20")),
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=5,
        save_strategy="steps",
        save_steps=10,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = Trainer(
        model=build_tiny_model(),
        args=args,
        train_dataset=_SyntheticTokens(256, 0),
        eval_dataset=_SyntheticTokens(32, 1),
        callbacks=[Mishap()],
    )
    trainer.train(resume_from_checkpoint=os.environ.get("RESUME_FROM") or None)
    print("script done", flush=True)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # PyTorch's gloo backend can deadlock or abort (SIGABRT) while the interpreter tears down
        # a process group that still has work in flight, with or without destroy_process_group
        # (pytorch/pytorch#190489, seen here in about half the runs): once every rank is done,
        # a distributed run of this script ends without that teardown.
        dist.barrier()
        os._exit(0)


if __name__ == "__main__":
    main()
