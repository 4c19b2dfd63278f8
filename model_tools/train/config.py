"""Training hyperparameters, with the defaults of SWIFT (the paper's trainer), and the settings hash.

The hash covers everything that decides what the run computes (data fingerprint, base, every
hyperparameter), so checkpoints are resumed only by the same command on the same data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """The adapter: SWIFT's rank 8, alpha 32, dropout 0.05 on every linear layer of the blocks."""

    rank: int = 8
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    qlora: bool = False


@dataclass(frozen=True)
class TrainSettings:
    """The optimisation: SWIFT's learning rate 1e-4, warm-up 0.05 and gradient clipping 0.5."""

    lr: float = 1e-4
    epochs: float = 5.0
    batch_size: int = 1
    grad_accum: int = 16
    max_length: int = 2048
    warmup_ratio: float = 0.05
    max_grad_norm: float = 0.5
    eval_fraction: float = 0.05
    seed: int = 42
    save_steps: int = 100
    logging_steps: int = 10
    dtype: str = "auto"  # "auto": bf16 on a GPU that has it, else float32


def settings_hash(kind: str, base_fingerprint: str, data_fingerprint: str, lora: LoraSettings | None,
                  train: TrainSettings, language: str = "") -> str:
    """sha256 of everything that decides the run (not logging or checkpoint cadence)."""
    values = asdict(train)
    for key in ("save_steps", "logging_steps"):
        values.pop(key)
    blob = json.dumps({"kind": kind, "base": base_fingerprint, "data": data_fingerprint, "language": language,
                       "lora": asdict(lora) if lora else None, "train": values}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
