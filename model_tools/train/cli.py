"""``jmedllm train``: ``lora`` (MPEFT on question-answer pairs) and ``pretrain`` (MFPT on plain text).

Also runs as ``accelerate launch ... -m model_tools.train.cli lora ...`` (FSDP / DeepSpeed: see
``model_tools/train/assets/accelerate/``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from model_tools.train.config import DEFAULT_TARGETS, LoraSettings, TrainSettings

_DIR = click.Path(file_okay=False, path_type=Path)
_PATH = click.Path(path_type=Path)
_DEFAULTS = TrainSettings()
_LORA = LoraSettings()


def _echo(line: str) -> None:
    click.echo(line, err=True)


def _run(job_factory: Callable[[], Any]) -> None:
    from app.errors import UserError
    from model_tools.interrupts import stop_on_signals
    from model_tools.train.trainer import run

    stop_on_signals()
    try:
        job = job_factory()
        result = run(job, echo=_echo)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("interrupted: run the same command again to continue from the last checkpoint", err=True)
        sys.exit(130)
    for path in result.files:
        click.echo(f"wrote {path}")


def _targets(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in value.split(",") if x.strip())
    if not names:
        raise click.BadParameter("name at least one module, e.g. q_proj,v_proj")
    return names


def _positive(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    """A number above 0 and finite (click's ranges let NaN and infinity through)."""
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter(f"{value} is not a positive, finite number")
    return value


def _rate(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A learning rate: positive, finite and at most 1 (above, AdamW diverges at once or overflows)."""
    if _positive(ctx, param, value) > 1:
        raise click.BadParameter(f"{value} is above 1; SWIFT's default is {_DEFAULTS.lr}")
    return value


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options both commands share (SWIFT's defaults)."""
    options = [
        click.option("--base", "base", type=_DIR, required=True, help="Base Hugging Face checkpoint (Qwen2)."),
        click.option("--out", "out", type=_DIR, required=True, help="Output folder (checkpoints go under it)."),
        click.option("--lr", type=float, callback=_rate, default=_DEFAULTS.lr, show_default=True,
                     help="Peak learning rate."),
        click.option("--epochs", type=float, callback=_positive, default=_DEFAULTS.epochs, show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=_DEFAULTS.batch_size, show_default=True,
                     help="Examples per device and step. On a GPU, 16 with --grad-accum 1 (the same 16 per optimizer "
                          "step) is ~3x faster."),
        click.option("--grad-accum", type=click.IntRange(1), default=_DEFAULTS.grad_accum, show_default=True,
                     help="Gradient accumulation steps."),
        click.option("--max-length", type=click.IntRange(8), default=_DEFAULTS.max_length, show_default=True,
                     help="Tokens per sequence (longer examples are truncated; the corpus is packed to it)."),
        click.option("--warmup", "warmup_ratio", type=click.FloatRange(0, 1, max_open=True),
                     default=_DEFAULTS.warmup_ratio, show_default=True, help="Warm-up, fraction of the steps."),
        click.option("--grad-clip", "max_grad_norm", type=float, callback=_positive,
                     default=_DEFAULTS.max_grad_norm, show_default=True),
        click.option("--eval-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     default=_DEFAULTS.eval_fraction, show_default=True,
                     help="Held out for the evaluation loss per epoch (at least one example)."),
        click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=_DEFAULTS.seed, show_default=True),
        click.option("--save-steps", type=click.IntRange(1), default=_DEFAULTS.save_steps, show_default=True,
                     help="Checkpoint every N optimizer steps."),
        click.option("--logging-steps", type=click.IntRange(1), default=_DEFAULTS.logging_steps, show_default=True),
        click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto",
                     show_default=True, help="auto: bfloat16 on a GPU that has it, else float32."),
        click.option("--rank", type=click.IntRange(1), default=_LORA.rank, show_default=True, help="LoRA rank."),
        click.option("--alpha", type=click.IntRange(1), default=_LORA.alpha, show_default=True, help="LoRA alpha."),
        click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=_LORA.dropout,
                     show_default=True, help="LoRA dropout."),
        click.option("--target-modules", default=",".join(DEFAULT_TARGETS), callback=_targets, show_default=True,
                     help="Comma-separated linear layers the LoRA adapts."),
        click.option("--allow-overlap", is_flag=True, help="Train even if benchmark questions are in the data."),
        click.option("--resume/--no-resume", default=True, show_default=True,
                     help="Continue from this run's last checkpoint; --no-resume discards it."),
        click.option("--overwrite", is_flag=True, help="Replace a finished model in --out."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(options: dict[str, Any]) -> tuple[TrainSettings, LoraSettings]:
    train = TrainSettings(**{k: options[k] for k in (
        "lr", "epochs", "batch_size", "grad_accum", "max_length", "warmup_ratio", "max_grad_norm", "eval_fraction",
        "seed", "save_steps", "logging_steps", "dtype")})
    lora = LoraSettings(rank=options["rank"], alpha=options["alpha"], dropout=options["dropout"],
                        target_modules=options["target_modules"], qlora=options.get("qlora", False))
    return train, lora


@click.group()
def train() -> None:
    """Train: LoRA on question-answer pairs (MPEFT) or continued pre-training on text (MFPT)."""


@train.command()
@click.option("--data", "data", type=_PATH, required=True,
              help="Question set (.jsonl/.csv, docs/question_sets.md) or instruction/response JSONL.")
@click.option("--language", type=click.Choice(["ja", "en"]), default="ja", show_default=True,
              help="Which language of the question set to train on (the benchmark's template for it).")
@click.option("--qlora", is_flag=True, help="4-bit base (bitsandbytes); needs a CUDA GPU.")
@_common
def lora(**options: Any) -> None:
    """MPEFT: a LoRA adapter on question-answer pairs, loss on the answer only."""
    from model_tools.train.data import load_pairs
    from model_tools.train.trainer import Job

    def job() -> Job:
        settings, adapter = _settings(options)
        return Job("lora", options["base"], load_pairs(options["data"], options["language"]), options["out"],
                   settings, adapter, options["language"], options["allow_overlap"], options["resume"],
                   options["overwrite"])

    _run(job)


@train.command()
@click.option("--corpus", type=_PATH, required=True, help="UTF-8 text file, or a folder of .txt files.")
@click.option("--lora", "use_lora", is_flag=True, help="Train a LoRA adapter instead of every parameter.")
@_common
def pretrain(use_lora: bool, **options: Any) -> None:
    """MFPT: continued pre-training on plain text, packed; full-parameter unless --lora."""
    from model_tools.train.data import load_corpus
    from model_tools.train.trainer import Job

    def job() -> Job:
        settings, adapter = _settings(options)
        return Job("pretrain", options["base"], load_corpus(options["corpus"]), options["out"], settings,
                   adapter if use_lora else None, "", options["allow_overlap"], options["resume"],
                   options["overwrite"])

    _run(job)


if __name__ == "__main__":  # accelerate launch -m model_tools.train.cli ...
    train()
