"""Measure `jmedllm train` on a GPU: training tokens/s and peak GPU memory at the demo's and Qwen2-7B's shapes.

Two steps, because the GPU machine has neither the demo model nor IgakuQA:

    # here (demo model and IgakuQA at hand): the demo tokenizer, one IgakuQA year as a question set,
    # and every year's Japanese questions as a plain-text MFPT corpus (.gpu/ is git-ignored: copy it over)
    .venv/bin/python scripts/bench_train.py prepare --igakuqa ../shared/igakuqa --year 2018 --out .gpu/train
    # on the GPU machine (repository root on PYTHONPATH, the train extra installed)
    python3 scripts/bench_train.py run --inputs .gpu/train --work /tmp/bench-train --shape 0.5b --method lora

`run` writes a base checkpoint with the shape's exact configuration and random bf16 weights (speed and
memory depend on shapes, not values), then trains it through :func:`model_tools.train.trainer.run`, the
code behind `jmedllm train`, with the defaults of the command except the epoch count and, when given,
the batch split (``--batch-size``, ``--grad-accum``). It prints one JSON
line: steady tokens/s (from the first logged step to the last, so start-up and the final save are left
out), peak GPU memory allocated and reserved, and the run's step and token counts.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwen2_shapes import CONTEXT_LENGTH, QWEN2_7B, QWEN25_05B, RMS_NORM_EPS, ROPE_THETA

SHAPES = {"0.5b": QWEN25_05B, "7b": QWEN2_7B}
_STEP_LINE = re.compile(r"^step (\d+)/")


@click.group()
def main() -> None:
    """Training speed and memory on a GPU."""


@main.command()
@click.option("--igakuqa", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--year", type=int, default=2018, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def prepare(igakuqa: Path, year: int, out: Path) -> None:
    """Write the demo tokenizer, ``questions.jsonl`` (one IgakuQA year, text-only) and ``corpus.txt`` (every
    year's Japanese questions and choices, as plain text)."""
    from transformers import AutoTokenizer

    from app.bench.loaders import load_path
    from app.demo_model import ensure_demo_model

    gguf = ensure_demo_model(progress=False)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out / "tokenizer")
    every_year = [q for q in load_path(igakuqa).questions if q.text_ja]
    questions = [q for q in every_year if q.year == year and q.text_only and q.choices_ja and len(q.answer[0]) == 1]
    rows = [{"id": q.problem_id, "question": q.text_ja, "choices": list(q.choices_ja), "answer": list(q.answer)}
            for q in questions]
    (out / "questions.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                         encoding="utf-8")
    (out / "corpus.txt").write_text("".join(f"{q.text_ja}\n{' '.join(q.choices_ja)}\n" for q in every_year),
                                    encoding="utf-8")
    click.echo(f"{out}: tokenizer, {len(rows)} questions of {year}, a corpus of {len(every_year)} questions' texts")


def make_base(shape: str, tokenizer: Path, folder: Path) -> Path:
    """A Qwen2 checkpoint with ``shape``'s configuration and random bf16 weights (drawn on the GPU)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    if (folder / "config.json").exists():
        return folder
    tok = AutoTokenizer.from_pretrained(tokenizer)
    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=CONTEXT_LENGTH, rms_norm_eps=RMS_NORM_EPS,
                         rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
                         bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(torch.float32)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@main.command()
@click.option("--inputs", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--shape", type=click.Choice(sorted(SHAPES)), required=True)
@click.option("--method", type=click.Choice(["lora", "qlora", "full"]), required=True,
              help="lora: `train lora` on the questions (MPEFT); qlora: the same with --qlora (4-bit base); "
                   "full: `train pretrain` on the corpus (MFPT).")
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-length", type=int, default=2048, show_default=True)
@click.option("--batch-size", type=int, default=1, show_default=True, help="Examples per step (`--batch-size`).")
@click.option("--grad-accum", type=int, default=16, show_default=True, help="Steps per optimizer step.")
def run(inputs: Path, work: Path, shape: str, method: str, epochs: float, max_length: int, batch_size: int,
        grad_accum: int) -> None:
    """Train once and print the measurement as one JSON line."""
    import torch

    from model_tools.train.config import LoraSettings, TrainSettings
    from model_tools.train.data import load_corpus, load_pairs
    from model_tools.train.trainer import Job
    from model_tools.train.trainer import run as train

    base = make_base(shape, inputs / "tokenizer", work / f"base-{shape}")
    settings = TrainSettings(epochs=epochs, max_length=max_length, batch_size=batch_size, grad_accum=grad_accum,
                             logging_steps=1, save_steps=10_000)
    if method in ("lora", "qlora"):
        adapter = LoraSettings(qlora=method == "qlora")
        kind, data, language = "lora", load_pairs(inputs / "questions.jsonl", "ja"), "ja"
    else:
        kind, data, adapter, language = "pretrain", load_corpus(inputs / "corpus.txt"), None, ""
    job = Job(kind, base, data, work / f"out-{shape}-{method}", settings, adapter, language,
              allow_overlap=True, overwrite=True, resume=False)
    logged: dict[int, float] = {}

    def echo(line: str) -> None:
        print(line, flush=True)
        if match := _STEP_LINE.match(line):
            logged[int(match.group(1))] = time.monotonic()

    cuda = torch.cuda.is_available()  # without one (a smoke test of this script), no memory figures
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.monotonic()
    result = train(job, echo=echo, leakage_sets=[])
    wall = time.monotonic() - started
    tokens = {e["step"]: e["num_input_tokens_seen"] for e in result.manifest["losses"] if "loss" in e}
    if len(logged) < 2:
        raise click.ClickException("fewer than two optimizer steps were logged: use more data or --epochs")
    first, last = min(logged), max(logged)
    gib = 1024**3
    print(json.dumps({
        "shape": shape, "method": method, "batch_size": batch_size, "grad_accum": grad_accum,
        "gpu": torch.cuda.get_device_name(0) if cuda else "",
        "steps": result.manifest["steps"], "tokens": result.manifest["tokens_seen"],
        "tokens_per_s": round((tokens[last] - tokens[first]) / (logged[last] - logged[first]), 1),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / gib, 2) if cuda else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / gib, 2) if cuda else None,
        "wall_s": round(wall, 1), "final_loss": result.manifest["losses"][-1].get("loss"),
    }), flush=True)


if __name__ == "__main__":
    main()
