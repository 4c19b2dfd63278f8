"""``jmedllm convert``: build (all steps), merge, export, quantize, verify."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

_DIR = click.Path(file_okay=False, path_type=Path)
_FILE = click.Path(dir_okay=False, path_type=Path)

P = ParamSpec("P")
R = TypeVar("R")


def _run(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    from model_tools.checkpoint import ConvertError
    from model_tools.interrupts import stop_on_signals

    stop_on_signals()
    try:
        return func(*args, **kwargs)
    except ConvertError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("interrupted: no partial output was kept", err=True)
        sys.exit(130)


def _quant_list(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    from model_tools.checkpoint import ConvertError
    from model_tools.quantize import parse_quant_types

    try:
        return parse_quant_types(value) if value else []
    except ConvertError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group()
def convert() -> None:
    """Merge a LoRA into a Qwen2 checkpoint, export GGUF, quantize and verify."""


@convert.command()
@click.option("--base", "base_dir", type=_DIR, required=True, help="Base Hugging Face checkpoint (Qwen2).")
@click.option("--adapter", "adapter_dir", type=_DIR, help="PEFT LoRA adapter folder.")
@click.option("--out", "out_dir", type=_DIR, required=True, help="Output folder.")
@click.option("--quant", default="Q4_K_M", callback=_quant_list, show_default=True,
              help="Comma-separated: Q4_K_M, Q5_K_M, Q6_K, Q8_0.")
@click.option("--outtype", type=click.Choice(["f16", "bf16", "f32"]), default="f16", show_default=True,
              help="Type of the unquantized GGUF (also the verification reference).")
@click.option("--name", default="JMedLLM", show_default=True, help="Model name (file names and metadata).")
@click.option("--save-merged", "merged_dir", type=_DIR, help="Also write the merged model as HF safetensors.")
@click.option("--no-verify", is_flag=True, help="Skip verification.")
@click.option("--threads", type=int, help="Quantizer threads (default: all cores).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier build in --out.")
def build(base_dir: Path, adapter_dir: Path | None, out_dir: Path, quant: list[str], outtype: str, name: str,
          merged_dir: Path | None, no_verify: bool, threads: int | None, overwrite: bool) -> None:
    """Everything: validate, merge, export, quantize, verify, manifest and model card."""
    from model_tools.build import VERIFICATION
    from model_tools.build import build as run_build
    from model_tools.verify import format_table

    result = _run(run_build, base_dir, adapter_dir, out_dir, quant, outtype, name, merged_dir,
                  not no_verify, threads, overwrite=overwrite)
    if result.report is not None:
        click.echo(format_table(result.report))
    for path in result.outputs:
        click.echo(f"wrote {path}")
    click.echo(f"manifest: {result.manifest}")
    if not result.passed:
        raise click.ClickException(f"verification failed (see {result.manifest.parent / VERIFICATION}); "
                                   "its GGUF files were not kept. Build with --no-verify to keep them unverified.")


@convert.command()
@click.option("--base", "base_dir", type=_DIR, required=True)
@click.option("--adapter", "adapter_dir", type=_DIR, required=True)
@click.option("--out", "out_dir", type=_DIR, required=True, help="Folder for the merged safetensors checkpoint.")
def merge(base_dir: Path, adapter_dir: Path, out_dir: Path) -> None:
    """Merge a LoRA adapter into the base, streaming, and save HF safetensors shards."""
    from model_tools.checkpoint import open_adapter, open_base
    from model_tools.files import require_free_space
    from model_tools.lora_merge import save_merged

    def run() -> None:
        base = open_base(base_dir)
        adapter = open_adapter(adapter_dir, base)
        require_free_space(out_dir.parent, sum(e.nbytes for e in base.tensors.values()))
        save_merged(base, adapter, out_dir)

    _run(run)
    click.echo(f"wrote {out_dir}")


@convert.command()
@click.option("--model", "model_dir", type=_DIR, required=True, help="Hugging Face checkpoint (base or merged).")
@click.option("--adapter", "adapter_dir", type=_DIR, help="Optional LoRA adapter, merged on the fly.")
@click.option("--out", "out_path", type=_FILE, required=True)
@click.option("--outtype", type=click.Choice(["f16", "bf16", "f32"]), default="f16", show_default=True)
@click.option("--name", default="JMedLLM", show_default=True)
def export(model_dir: Path, adapter_dir: Path | None, out_path: Path, outtype: str, name: str) -> None:
    """Export a checkpoint (optionally merging an adapter on the fly) to a GGUF file."""
    from model_tools.checkpoint import open_adapter, open_base
    from model_tools.gguf_export import export_gguf

    def run() -> None:
        base = open_base(model_dir)
        adapter = open_adapter(adapter_dir, base) if adapter_dir else None
        export_gguf(base, adapter, out_path, outtype, name)

    _run(run)
    click.echo(f"wrote {out_path}")


@convert.command()
@click.option("--input", "src", type=_FILE, required=True, help="F32/F16/BF16 GGUF.")
@click.option("--out", "dst", type=_FILE, required=True)
@click.option("--type", "quant_type", default="Q4_K_M", show_default=True, help="Q4_K_M, Q5_K_M, Q6_K or Q8_0.")
@click.option("--threads", type=int, help="Default: all cores.")
def quantize(src: Path, dst: Path, quant_type: str, threads: int | None) -> None:
    """Quantize a GGUF with llama.cpp's quantizer."""
    from model_tools.quantize import quantize as run_quantize

    _run(run_quantize, src, dst, quant_type, threads)
    click.echo(f"wrote {dst}")


@convert.command()
@click.option("--model", "model_dir", type=_DIR, required=True, help="Base (or merged) HF checkpoint.")
@click.option("--adapter", "adapter_dir", type=_DIR, help="LoRA adapter; the reference is peft's merge.")
@click.option("--gguf", "gguf_path", type=_FILE, required=True, help="The F32/F16 GGUF to check.")
@click.option("--quant", "quants", multiple=True, metavar="TYPE=FILE", help="Quantized file to score, repeatable.")
@click.option("--report", "report_path", type=_FILE, help="Write the JSON report here.")
def verify(model_dir: Path, adapter_dir: Path | None, gguf_path: Path, quants: tuple[str, ...],
           report_path: Path | None) -> None:
    """Tokenizer parity, logits parity and quantization quality; exit 1 when a threshold fails."""
    from model_tools.checkpoint import open_adapter, open_base
    from model_tools.quantize import parse_quant_types
    from model_tools.verify import format_table, run_verification, write_report

    def run() -> dict:
        base = open_base(model_dir)
        if adapter_dir:
            open_adapter(adapter_dir, base)
        quant_paths = {}
        for item in quants:
            kind, _, path = item.partition("=")
            quant_paths[parse_quant_types(kind)[0]] = Path(path)
        return run_verification(model_dir, adapter_dir, gguf_path, base.n_params(), quant_paths)

    report = _run(run)
    click.echo(format_table(report))
    if report_path:
        write_report(report, report_path)
    if not report["passed"]:
        raise click.ClickException("verification failed")
