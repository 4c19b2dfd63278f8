"""Benchmark ``jmedllm convert build`` against the reference path, side by side on the same inputs.

Reference: peft ``merge_and_unload`` + ``save_pretrained``, then llama.cpp's ``convert_hf_to_gguf.py``
(from the llama-cpp-python source distribution, fetched with pip at benchmark time into the work
folder, never committed), then the same llama.cpp quantizer. Each step runs in its own process;
wall time is summed and peak RSS is the largest of the steps (``wait4`` rusage).

Checkpoints: ``qwen05`` (the demo Qwen2.5-0.5B as a bf16 HF checkpoint) and ``7b<N>``, e.g. ``7b4``
(random weights with Qwen2-7B's exact shapes but N layers: even 4 hold the full model's largest
tensors; more layers show how each path's peak grows with the model).

    .venv/bin/python scripts/bench_convert.py --work /tmp/bench-convert --checkpoint qwen05 --checkpoint 7b4
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import click
from qwen2_shapes import CONTEXT_LENGTH, QWEN2_7B, RMS_NORM_EPS, ROPE_THETA, parameter_count

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
LCP_VERSION = "0.3.36"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

_PREPARE = rf'''
import shutil, sys, torch
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
from peft import LoraConfig, get_peft_model
from app.demo_model import ensure_demo_model
kind, base, adapter = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
gguf = ensure_demo_model(progress=False)
tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
torch.manual_seed(0)
if kind == "qwen05":
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None; model.is_quantized = False; del model.config.quantization_config
    model = model.to(torch.bfloat16)
else:
    shape = {{**{QWEN2_7B!r}, "num_hidden_layers": int(kind[2:])}}
    cfg = Qwen2Config(**shape, max_position_embeddings={CONTEXT_LENGTH}, rope_theta={ROPE_THETA!r},
                      rms_norm_eps={RMS_NORM_EPS!r}, bos_token_id=151643, eos_token_id=151645)
    torch.set_default_dtype(torch.bfloat16)
    model = Qwen2ForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
model.save_pretrained(base, safe_serialization=True)
tok.save_pretrained(base)
peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules={LORA_TARGETS!r}, lora_dropout=0.0))
with torch.no_grad():
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.normal_(0, 0.02)
peft_model.save_pretrained(adapter, safe_serialization=True)
'''

_REF_MERGE = r'''
import sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
base, adapter, out = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
model.save_pretrained(out, safe_serialization=True)
AutoTokenizer.from_pretrained(base).save_pretrained(out)
'''

_REF_QUANT = r'''
import sys
from model_tools.quantize import quantize
quantize(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)
'''


def _status_kib(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines)
            if k in ("RssAnon", "RssFile")}


def run_measured(cmd: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> dict[str, float]:
    """Run ``cmd``: wall seconds, peak RSS (wait4's ru_maxrss) and sampled peaks of anonymous and
    file-backed (mmap) resident memory, all in GiB."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks = {"RssAnon": 0, "RssFile": 0}
    stderr_chunks: list[bytes] = []
    os.set_blocking(proc.stderr.fileno(), False)  # type: ignore[union-attr]
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        for key, value in _status_kib(proc.pid).items():
            peaks[key] = max(peaks[key], value)
        chunk = proc.stderr.read()  # type: ignore[union-attr]
        if chunk:
            stderr_chunks.append(chunk[-4000:])
        time.sleep(0.1)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        stderr = b"".join(stderr_chunks)[-3000:].decode(errors="replace")
        raise click.ClickException(f"{' '.join(cmd)} failed:\n{stderr}")
    gib = 1024**2
    return {"wall_s": round(wall, 1), "peak_rss_gib": round(usage.ru_maxrss / gib, 2),
            "peak_anon_gib": round(peaks["RssAnon"] / gib, 2), "peak_file_gib": round(peaks["RssFile"] / gib, 2)}


def converter_dir(work: Path) -> Path:
    """llama.cpp's converter from the llama-cpp-python sdist (pip download into the work folder)."""
    root = work / "sdist"
    script = root / f"llama_cpp_python-{LCP_VERSION}" / "vendor" / "llama.cpp"
    if not (script / "convert_hf_to_gguf.py").is_file():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([PY, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={LCP_VERSION}", "-d", str(root)], check=True)
        with tarfile.open(root / f"llama_cpp_python-{LCP_VERSION}.tar.gz") as tar:
            members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name and
                       ("/gguf-py/" in m.name or "/conversion/" in m.name or m.name.endswith("convert_hf_to_gguf.py"))]
            tar.extractall(root, members=members, filter="data")
    return script


def bench(kind: str, work: Path, quant: str) -> dict[str, Any]:
    folder = work / kind
    base, adapter = folder / "base", folder / "adapter"
    if not (base / "config.json").is_file():
        click.echo(f"[{kind}] preparing inputs (not timed)")
        subprocess.run([PY, "-c", _PREPARE, kind, str(base), str(adapter)], cwd=REPO, check=True)
    for sub in ("ours", "ref"):
        shutil.rmtree(folder / sub, ignore_errors=True)
    click.echo(f"[{kind}] jmedllm convert build")
    ours = run_measured([PY, "-m", "app.cli", "convert", "build", "--base", str(base), "--adapter",
                         str(adapter), "--out", str(folder / "ours"), "--quant", quant, "--no-verify"])
    shutil.rmtree(folder / "ours")  # outputs are not kept: the 7b<N> checkpoints are large
    click.echo(f"[{kind}] reference: peft merge + convert_hf_to_gguf.py + quantize")
    conv = converter_dir(work)
    (folder / "ref").mkdir()
    steps = {
        "peft merge + save_pretrained": [PY, "-c", _REF_MERGE, str(base), str(adapter), str(folder / "ref" / "merged")],
        "convert_hf_to_gguf.py f16": [PY, str(conv / "convert_hf_to_gguf.py"), str(folder / "ref" / "merged"),
                                      "--outtype", "f16", "--outfile", str(folder / "ref" / "ref-f16.gguf")],
        f"quantize {quant}": [PY, "-c", _REF_QUANT, str(folder / "ref" / "ref-f16.gguf"),
                              str(folder / "ref" / f"ref-{quant.lower()}.gguf"), quant],
    }
    ref_steps = {}
    for label, cmd in steps.items():
        env = {"PYTHONPATH": str(conv / "gguf-py")} if "convert_hf" in label else None
        ref_steps[label] = run_measured(cmd, env=env)
    reference = {"wall_s": round(sum(s["wall_s"] for s in ref_steps.values()), 1)}
    for key in ("peak_rss_gib", "peak_anon_gib", "peak_file_gib"):
        reference[key] = max(s[key] for s in ref_steps.values())
    shutil.rmtree(folder / "ref")
    click.echo(f"[{kind}] our steps alone: convert export, convert quantize")
    ours_steps = {
        "convert export (merge+f16)": run_measured(
            [PY, "-m", "app.cli", "convert", "export", "--model", str(base), "--adapter", str(adapter),
             "--out", str(folder / "ours" / "step-f16.gguf")]),
        f"convert quantize {quant}": run_measured(
            [PY, "-m", "app.cli", "convert", "quantize", "--input", str(folder / "ours" / "step-f16.gguf"),
             "--out", str(folder / "ours" / "step-q.gguf"), "--type", quant]),
    }
    shutil.rmtree(folder / "ours")
    config = json.loads((base / "config.json").read_text())
    return {"checkpoint": kind, "layers": config["num_hidden_layers"], "quant": quant,
            "ours": {**ours, "steps": ours_steps}, "reference": {**reference, "steps": ref_steps},
            "rss_ratio": round(ours["peak_rss_gib"] / reference["peak_rss_gib"], 3),
            "anon_ratio": round(ours["peak_anon_gib"] / max(reference["peak_anon_gib"], 1e-9), 3),
            "wall_ratio": round(ours["wall_s"] / reference["wall_s"], 3)}


@click.command()
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("/tmp/bench-convert"),
              show_default=True)
@click.option("--checkpoint", "kinds", multiple=True, default=("qwen05", "7b4"), show_default=True,
              callback=lambda ctx, param, value: [_checkpoint(v) for v in value],
              help="qwen05, or 7b<N> for Qwen2-7B's shapes with N layers.")
@click.option("--quant", default="Q4_K_M", show_default=True)
def main(work: Path, kinds: tuple[str, ...], quant: str) -> None:
    """Print wall time and peak RSS of both paths and their ratios, as a table and JSON."""
    results = [bench(kind, work, quant) for kind in kinds]
    header = f"{'checkpoint':<10}{'path / step':<34}{'wall s':>8}{'peak RSS':>10}{'anon':>8}{'mmap':>8}  (GiB)"
    click.echo("\n" + header)
    for r in results:
        for path in ("ours", "reference"):
            rows = [(path, r[path])] + [(f"  {k}", v) for k, v in r[path]["steps"].items()]
            for label, m in rows:
                click.echo(f"{r['checkpoint']:<10}{label:<34}{m['wall_s']:>8}{m['peak_rss_gib']:>10}"
                           f"{m['peak_anon_gib']:>8}{m['peak_file_gib']:>8}")
        click.echo(f"{r['checkpoint']:<10}{'ratio ours/reference':<34}{r['wall_ratio']:>8}{r['rss_ratio']:>10}"
                   f"{r['anon_ratio']:>8}")
    for r in results:
        if r["checkpoint"].startswith("7b"):
            click.echo(projection(r))
    click.echo(json.dumps(results, indent=2))


def _checkpoint(value: str) -> str:
    layers = QWEN2_7B["num_hidden_layers"]
    if value == "qwen05" or (value.startswith("7b") and value[2:].isdigit() and 0 < int(value[2:]) <= layers):
        return value
    raise click.BadParameter(f"{value!r}: use qwen05 or 7b<N> with 1 <= N <= {layers}")


def projection(r: dict[str, Any]) -> str:
    """Project the figures measured with N layers to Qwen2-7B's full 28.

    Ours: memory does not grow with layers (merge/export hold one tensor at a time, and llama.cpp's
    quantizer converts one tensor at a time; the largest, the 152064x3584 embedding, is already in
    the N-layer model). Reference: the peft merge loads the whole model, so its peak scales with the
    parameter count, while its other steps stay as measured.
    """
    layers = int(r["layers"])
    scale = parameter_count(QWEN2_7B) / parameter_count(QWEN2_7B, layers)
    ours, ref = r["ours"], r["reference"]
    steps = dict(ref["steps"])
    merge = steps.pop("peft merge + save_pretrained")
    ref_peak = max(merge["peak_rss_gib"] * scale, *(s["peak_rss_gib"] for s in steps.values()))
    return (f"projection to {QWEN2_7B['num_hidden_layers']} layers ({parameter_count(QWEN2_7B) / 1e9:.2f} B params, "
            f"x{scale:.2f} the {layers}-layer model): "
            f"ours ~{ours['peak_rss_gib']:.1f} GiB peak RSS (layer-independent), "
            f"reference ~{ref_peak:.1f} GiB (peft merge holds the whole model); "
            f"ratio ~{ours['peak_rss_gib'] / ref_peak:.2f}")


if __name__ == "__main__":
    main()
