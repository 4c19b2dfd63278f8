"""Run a training job with TRL's SFT trainer (and peft for LoRA): checks first, then train, resume, publish.

Everything that can be refused is checked before the first byte is written: the base (a Qwen2
checkpoint, :func:`model_tools.checkpoint.open_base`), the data, the output folder, the leakage
check and the free disk space. The same command after a Ctrl-C or a kill continues from the last
sealed checkpoint with the same data order (fixed seed; the Trainer restores RNG and skips the
batches already seen).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.disk import free_bytes, size_text
from app.timestamps import utc_now
from model_tools.checkpoint import BaseCheckpoint, open_base
from model_tools.train import run_dir
from model_tools.train.config import LoraSettings, TrainSettings, settings_hash
from model_tools.train.data import TrainingData, fingerprint, split
from model_tools.train.errors import TrainError

if TYPE_CHECKING:
    from app.bench.data import Dataset

DISK_MARGIN = 256 * 1024**2  # bytes kept free beyond the estimate
ADAM_BYTES = 8  # two float32 moments per trainable parameter


@dataclass(frozen=True)
class Job:
    """One training run as asked: ``kind`` is "lora" (MPEFT) or "pretrain" (MFPT, full unless ``lora``)."""

    kind: str
    base: Path
    data: TrainingData
    out: Path
    train: TrainSettings
    lora: LoraSettings | None
    language: str = ""
    allow_overlap: bool = False
    resume: bool = True
    overwrite: bool = False


@dataclass(frozen=True)
class Result:
    out: Path
    files: list[Path]
    manifest: dict[str, Any]


def base_fingerprint(base: BaseCheckpoint) -> str:
    """The base's identity for the settings hash: sha256 of config.json, and the weight files' names and sizes
    (hashing gigabytes of weights at every start would be slow)."""
    files = [base.path / "config.json"]
    sizes = ",".join(f"{p.name}:{p.stat().st_size}" for p in base.weight_files)
    return f"{fingerprint(files)}:{sizes}"


def disk_needed(base: BaseCheckpoint, lora: LoraSettings | None, checkpoints: int = 2) -> int:
    """Bytes the run writes at most: ``checkpoints`` checkpoints (weights + Adam moments) and the result."""
    if lora is None:
        params = base.n_params()
        return (checkpoints * (4 + ADAM_BYTES) + 4) * params + DISK_MARGIN
    hidden, layers = int(base.config["hidden_size"]), int(base.config["num_hidden_layers"])
    adapter = 2 * lora.rank * hidden * 4 * len(lora.target_modules) * layers * 4  # generous: 4x the in/out widths
    return (checkpoints * (1 + 2) + 1) * adapter + DISK_MARGIN


def check_targets(base: BaseCheckpoint, lora: LoraSettings) -> None:
    """Every ``--target-modules`` name is a linear layer of the base's blocks (as peft matches it: by name)."""
    linear = {key.split(".")[-2] for key, entry in base.tensors.items()
              if key.startswith("model.layers.") and key.endswith(".weight") and len(entry.shape) == 2}
    unknown = [name for name in lora.target_modules if name not in linear]
    if unknown:
        raise TrainError(f"--target-modules: the base's blocks have no linear layer {', '.join(unknown)}; "
                         f"choose from {', '.join(sorted(linear))}")


def check_lengths(rows: Sequence[dict[str, str]], tokenizer: Any, max_length: int) -> None:
    """Refuse examples whose prompt alone fills ``max_length`` tokens: the trainer would drop them unseen."""
    prompts = [row["prompt"] for row in rows if "prompt" in row]
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]] if prompts else []
    too_long = [n for n in lengths if n >= max_length]
    if too_long:
        raise TrainError(f"{len(too_long)} of {len(lengths)} example(s) have a prompt of --max-length "
                         f"({max_length}) tokens or more (the longest {max(too_long)}), which leaves no room for "
                         f"the answer; raise --max-length above {max(too_long)} or shorten those prompts")


def check_leakage(job: Job, sets: Sequence[Dataset] | None, echo: Callable[[str], None]) -> dict[str, Any]:
    """The leakage report of the training texts (shown); stops unless ``allow_overlap``."""
    from model_tools.train.leakage import LeakageFound
    from model_tools.train.leakage import check_leakage as run_check

    report = run_check(job.data.texts, sets)
    if report.overlaps and not job.allow_overlap:
        raise LeakageFound(report)
    echo(report.message())
    return dict(report.as_dict())


def _device_dtype(train: TrainSettings, qlora: bool) -> tuple[Any, bool]:
    import torch

    cuda = torch.cuda.is_available()
    if qlora and not cuda:
        raise TrainError("--qlora needs a CUDA GPU (bitsandbytes 4-bit); none was found. Train without --qlora")
    if train.dtype == "auto":
        bf16 = cuda and torch.cuda.is_bf16_supported()
        return (torch.bfloat16 if bf16 else torch.float32), bf16
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[train.dtype]
    return dtype, dtype is torch.bfloat16


def _load_model(base: Path, dtype: Any, qlora: bool) -> Any:
    from transformers import AutoModelForCausalLM

    # safetensors only and no code from the folder, as open_base checked: never a pickle, never remote code
    kwargs: dict[str, Any] = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False,
                              "local_files_only": True}
    if qlora:
        try:
            from transformers import BitsAndBytesConfig
        except ImportError as exc:
            raise TrainError("--qlora needs bitsandbytes: pip install bitsandbytes") from exc
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    if qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    return model


def _peft_config(lora: LoraSettings) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM")


def _sft_config(job: Job, output_dir: Path, bf16: bool) -> Any:
    """TRL's settings; gradient checkpointing (memory for time) on a GPU only."""
    import torch
    from trl import SFTConfig

    t = job.train
    pretrain = job.kind == "pretrain"
    return SFTConfig(
        output_dir=str(output_dir), num_train_epochs=t.epochs, learning_rate=t.lr, warmup_steps=t.warmup_ratio,
        lr_scheduler_type="cosine", max_grad_norm=t.max_grad_norm, per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum, seed=t.seed,
        data_seed=t.seed, max_length=t.max_length, packing=pretrain, packing_strategy="wrapped",
        completion_only_loss=None if pretrain else True, eval_strategy="epoch", save_strategy="steps",
        save_steps=t.save_steps, save_total_limit=2, logging_steps=t.logging_steps, logging_first_step=True,
        include_num_input_tokens_seen="non_padding", bf16=bf16, report_to="none", disable_tqdm=True,
        gradient_checkpointing=torch.cuda.is_available(), dataloader_num_workers=0,
        optim="adamw_torch",
    )


def _quiet_eval(base: type) -> type:
    """``base`` whose evaluation leaves the random number generators as it found them.

    Evaluating draws from the global generator (each DataLoader iteration draws a seed). A checkpoint
    saved just before an evaluation records the state before those draws, so a resumed run would
    continue from another random state than the uninterrupted one; without the draws both agree.
    """
    import torch

    class QuietEval(base):
        def evaluate(self, *args: Any, **kwargs: Any) -> Any:
            with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
                return super().evaluate(*args, **kwargs)

    return QuietEval


def hardware() -> dict[str, Any]:
    """CPU, memory and GPUs of this machine, for the manifest."""
    import platform

    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count()}
    try:
        info["memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    if torch.cuda.is_available():
        info["gpus"] = [{"name": torch.cuda.get_device_name(i),
                         "memory_bytes": torch.cuda.get_device_properties(i).total_memory}
                        for i in range(torch.cuda.device_count())]
    return info


def run(job: Job, echo: Callable[[str], None] = print, leakage_sets: Sequence[Dataset] | None = None) -> Result:
    """Check, train (or resume), then publish the model, ``training.json`` and the model card into ``job.out``."""
    from model_tools.train.manifest import build_manifest, write_outputs

    base = open_base(job.base)
    run_hash = settings_hash(job.kind, base_fingerprint(base), job.data.fingerprint, job.lora, job.train, job.language)
    resume_from = run_dir.prepare(job.out, run_hash, job.resume, job.overwrite)
    train_rows, eval_rows = split(job.data.rows, job.train.eval_fraction, job.train.seed)
    if job.lora:
        check_targets(base, job.lora)
    dtype, bf16 = _device_dtype(job.train, bool(job.lora and job.lora.qlora))
    leakage = check_leakage(job, leakage_sets, echo)
    needed = disk_needed(base, job.lora)
    free = free_bytes(job.out)
    if free < needed:
        raise TrainError(f"not enough free disk space for {job.out}: need about {size_text(needed)}, "
                         f"{size_text(free)} free")
    started = utc_now()
    from datasets import Dataset as HFDataset
    from transformers import AutoTokenizer
    from transformers.trainer import TRAINING_ARGS_NAME
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    from model_tools.train.progress import ProgressLine, SealCheckpoints, StopOnInterrupt

    tokenizer = AutoTokenizer.from_pretrained(job.base)
    check_lengths(job.data.rows, tokenizer, job.train.max_length)
    model = _load_model(job.base, dtype, bool(job.lora and job.lora.qlora))
    folder = run_dir.checkpoints_dir(job.out)
    if int(os.environ.get("RANK", "0")) == 0:  # under accelerate launch, one process owns the folder
        run_dir.start(job.out, run_hash, resume_from is not None)
    trainer = _quiet_eval(SFTTrainer)(
        model=model, args=_sft_config(job, folder, bf16), processing_class=tokenizer,
        train_dataset=HFDataset.from_list(train_rows), eval_dataset=HFDataset.from_list(eval_rows),
        peft_config=_peft_config(job.lora) if job.lora else None,
        callbacks=[ProgressLine(echo), SealCheckpoints(), StopOnInterrupt()])
    trainer.remove_callback(PrinterCallback)  # with disable_tqdm it prints every log dict; ProgressLine replaces it
    if resume_from is not None:
        echo(f"resuming from {resume_from.name}")
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    staged = run_dir.checkpoints_dir(job.out) / run_dir.STAGE
    # every process (under FSDP / DeepSpeed it gathers the shards); the tokenizer is saved beside the weights
    trainer.save_model(str(staged))
    if not trainer.is_world_process_zero():
        return Result(job.out, [], {})
    (staged / TRAINING_ARGS_NAME).unlink(missing_ok=True)  # a pickle: only safetensors and JSON are published
    manifest = build_manifest(job, base, trainer.state, leakage, len(train_rows), len(eval_rows), started)
    write_outputs(staged, job, manifest)
    files = run_dir.publish(job.out)
    return Result(job.out, files, manifest)
