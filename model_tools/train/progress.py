"""Trainer callbacks: one progress line per logging step, and a seal on every checkpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from model_tools.interrupts import raise_if_interrupted
from model_tools.train.run_dir import seal


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressLine(TrainerCallback):
    """``step 10/40  epoch 1.25  loss 2.3456  1234 tok/s  elapsed 0:00:12  left 0:00:36`` per log."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.started = 0.0
        self.first_step = 0
        self.first_tokens = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self.started = time.monotonic()
        self.first_step = state.global_step
        self.first_tokens = state.num_input_tokens_seen
        if state.global_step:
            self.echo(f"resumed at step {state.global_step}/{state.max_steps}")

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        elapsed = time.monotonic() - self.started
        done = state.global_step - self.first_step
        left = elapsed / done * (state.max_steps - state.global_step) if done else 0.0
        rate = (state.num_input_tokens_seen - self.first_tokens) / elapsed if elapsed else 0.0
        if "eval_loss" in logs:
            self.echo(f"epoch {state.epoch:.2f}  eval loss {logs['eval_loss']:.4f}")
        elif "loss" in logs:
            self.echo(f"step {state.global_step}/{state.max_steps}  epoch {state.epoch:.2f}  "
                      f"loss {logs['loss']:.4f}  {rate:.0f} tok/s  elapsed {_clock(elapsed)}  left {_clock(left)}")


class StopOnInterrupt(TrainerCallback):
    """Stop at the next step after a Ctrl-C or SIGTERM that Python lost (see :mod:`model_tools.interrupts`)."""

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        raise_if_interrupted()


class SealCheckpoints(TrainerCallback):
    """Seal each checkpoint once the Trainer has written it (see :mod:`model_tools.train.run_dir`)."""

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        if state.is_world_process_zero:
            seal(Path(str(args.output_dir)) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
