"""``training.json`` (what was trained, on what, how, with which result) and the model card ``README.md``."""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.atomic import atomic_writer, write_json_atomic
from app.timestamps import utc_now
from model_tools.checkpoint import BaseCheckpoint
from model_tools.train.run_dir import MANIFEST

if TYPE_CHECKING:
    from transformers import TrainerState

    from model_tools.train.trainer import Job

LIBRARIES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets")
ALLOWED_SUFFIXES = (".safetensors", ".json", ".md", ".txt", ".jinja")


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def base_licence(base: BaseCheckpoint) -> str | None:
    """The licence the base model's README declares, if any."""
    licence = base.readme.license if base.readme is not None else None
    return ", ".join(licence) if isinstance(licence, list) else licence


def build_manifest(job: Job, base: BaseCheckpoint, state: TrainerState, leakage: dict[str, Any],
                   n_train: int, n_eval: int, started: str) -> dict[str, Any]:
    """Everything about the run: data fingerprint, hyperparameters, libraries, hardware, losses, leakage."""
    from model_tools.train.trainer import hardware

    history = state.log_history
    return {
        "kind": job.kind, "method": "MFPT" if job.kind == "pretrain" else "MPEFT",
        "output": "lora-adapter" if job.lora else "full-model",
        "base": {"path": str(job.base.resolve()), "name": base.readme.name if base.readme else job.base.name,
                 "licence": base_licence(base), "parameters": base.n_params()},
        "data": {"files": [str(p.resolve()) for p in job.data.files], "kind": job.data.kind,
                 "sha256": job.data.fingerprint, "examples": len(job.data.rows), "train": n_train, "eval": n_eval,
                 "language": job.language or None},
        "hyperparameters": {**asdict(job.train), "lora": asdict(job.lora) if job.lora else None,
                            "lr_scheduler": "cosine", "optimizer": "adamw_torch",
                            "loss": "language modelling (packed)" if job.kind == "pretrain" else "completion only"},
        "libraries": _versions(), "hardware": hardware(),
        "steps": state.global_step, "epochs": state.epoch, "tokens_seen": state.num_input_tokens_seen,
        "losses": [{k: e[k] for k in ("step", "epoch", "loss", "learning_rate", "num_input_tokens_seen") if k in e}
                   for e in history if "loss" in e],
        "eval_losses": [{"step": e["step"], "epoch": e["epoch"], "eval_loss": e["eval_loss"]}
                        for e in history if "eval_loss" in e],
        "leakage": leakage,
        "started": started, "finished": utc_now(),
    }


def model_card(job: Job, manifest: dict[str, Any]) -> str:
    """A short model card: what this is, from what, how trained, and that it is not for clinical use as is."""
    base, data, hp = manifest["base"], manifest["data"], manifest["hyperparameters"]
    what = "LoRA adapter" if job.lora else "full model"
    lora = hp["lora"]
    lines = [
        f"# {job.out.name}", "",
        f"A {what} trained with `jmedllm train {job.kind}` ({manifest['method']}, after the JMedLLM paper) "
        f"on top of **{base['name']}**.", "",
        "> **Not for clinical use without validation.** This model was trained on the data named below and has "
        "not been validated for diagnosis, treatment or any decision about a patient. Evaluate it on held-out "
        "questions (`jmedllm bench`) and have clinicians review its answers before any use.", "",
        "## Training", "",
        f"- Base model: {base['name']} ({base['path']}); licence: {base['licence'] or 'not stated in its README'} "
        "(this model inherits it)",
        f"- Data: {', '.join(Path(f).name for f in data['files'])} ({data['kind']}, {data['examples']} examples, "
        f"{data['eval']} held out), sha256 `{data['sha256']}`",
        f"- Learning rate {hp['lr']}, {hp['epochs']} epochs, batch {hp['batch_size']} x {hp['grad_accum']} "
        f"accumulation, max length {hp['max_length']}, warm-up {hp['warmup_ratio']}, "
        f"gradient clipping {hp['max_grad_norm']}, seed {hp['seed']}",
    ]
    if lora:
        lines.append(f"- LoRA rank {lora['rank']}, alpha {lora['alpha']}, dropout {lora['dropout']}, "
                     f"targets {', '.join(lora['target_modules'])}{' (QLoRA, 4-bit base)' if lora['qlora'] else ''}")
    final_eval = manifest["eval_losses"][-1]["eval_loss"] if manifest["eval_losses"] else None
    lines += [f"- Steps {manifest['steps']}; final evaluation loss "
              f"{'n/a' if final_eval is None else f'{final_eval:.4f}'}",
              f"- Leakage check: {manifest['leakage'].get('exact', 0)} exact, {manifest['leakage'].get('near', 0)} "
              "near-duplicate benchmark questions in the training data", "",
              f"Every detail (libraries, hardware, losses) is in `{MANIFEST}`."]
    if job.lora:
        lines += ["", "## Use", "", f"`jmedllm convert build --base {base['path']} --adapter {job.out} --out DIR`"]
    return "\n".join(lines) + "\n"


def write_outputs(staged: Path, job: Job, manifest: dict[str, Any]) -> None:
    """Write the model card and the manifest beside the staged weights; refuse anything but safetensors/JSON/text."""
    with atomic_writer(staged / "README.md") as handle:
        handle.write(model_card(job, manifest).encode("utf-8"))
    unexpected = [p.name for p in staged.iterdir() if not p.name.endswith(ALLOWED_SUFFIXES)]
    if unexpected:
        raise RuntimeError(f"unexpected output files (only safetensors and JSON are published): {unexpected}")
    write_json_atomic(staged / MANIFEST, {**manifest, "files": sorted(p.name for p in staged.iterdir())})
