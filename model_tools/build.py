"""The one command: validate, merge+export (streamed), quantize, verify, then manifest and model card."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.atomic import atomic_writer, write_json_atomic
from app.hashing import sha256_file
from model_tools.checkpoint import BaseCheckpoint, ConvertError, LoraAdapter, open_adapter, open_base
from model_tools.files import check_new_folder, require_free_space
from model_tools.gguf_export import export_gguf
from model_tools.interrupts import raise_if_interrupted
from model_tools.lora_merge import save_merged
from model_tools.quantize import BITS_PER_WEIGHT, quantize
from model_tools.verify import run_verification

MANIFEST, MODEL_CARD, VERIFICATION = "manifest.json", "MODEL_CARD.md", "verification.json"
REPORTS = (VERIFICATION, MANIFEST, MODEL_CARD)  # in the order publish() moves them
STAGE_PREFIX = ".build-"
LIBRARIES = ("jmedllm", "llama-cpp-python", "gguf", "torch", "transformers", "peft", "safetensors", "numpy")
_DISK_MARGIN = 1.05
_HASHED_INPUTS = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                  "chat_template.jinja", "adapter_config.json", "adapter_model.safetensors",
                  "model.safetensors.index.json", "README.md")


@dataclass
class BuildResult:
    """What a build produced: output files, the verification report and where the manifest is."""

    outputs: list[Path]
    report: dict[str, Any] | None
    manifest: Path

    @property
    def passed(self) -> bool:
        return self.report is None or bool(self.report["passed"])


def estimate_disk(base: BaseCheckpoint, out_type: str, quant_types: list[str], merged: bool) -> int:
    """Bytes the build will write (GGUF, quantized files, optional merged checkpoint), with margin."""
    params = base.n_params()
    total = params * BITS_PER_WEIGHT[out_type.upper()] / 8
    total += sum(params * BITS_PER_WEIGHT[q] / 8 for q in quant_types)
    if merged:
        total += sum(entry.nbytes for entry in base.tensors.values())
    return int(total * _DISK_MARGIN) + 64 * 1024**2


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _hash_inputs(folder: Path, extra: list[Path]) -> dict[str, Any]:
    files = [folder / n for n in _HASHED_INPUTS if (folder / n).is_file()] + extra
    return {"path": str(folder.resolve()),
            "files": {f.name: {"sha256": sha256_file(f), "size": f.stat().st_size} for f in files}}


def _describe_output(path: Path) -> dict[str, Any]:
    return {"file": path.name, "sha256": sha256_file(path), "size": path.stat().st_size}


def _readme_lines(base: BaseCheckpoint) -> list[str]:
    """The licence and use notice the GGUF carries from the checkpoint's README.md."""
    readme = base.readme
    if readme is None:
        return []
    licence = ",".join(readme.license) if isinstance(readme.license, list) else readme.license
    parts = [part for part in (licence, readme.license_name, readme.license_link) if part]
    lines = ["", f"Licence (from the checkpoint's README.md): {' · '.join(parts) or 'not stated'}."]
    if readme.description:
        lines += ["", "Description (general.description):", "", *(f"> {line}" if line else ">"
                                                                   for line in readme.description.splitlines())]
    return lines


def model_card(name: str, base: BaseCheckpoint, adapter: LoraAdapter | None, manifest: dict[str, Any]) -> str:
    """A short Markdown model card from the manifest."""
    lines = [f"# {name}", "",
             f"GGUF build of `{base.path.name}` (Qwen2, {base.n_layers} layers, "
             f"{base.n_params() / 1e9:.2f} B parameters)"
             + (f" merged with the LoRA adapter `{adapter.path.name}` (r={adapter.config.get('r')}, "
                f"alpha={adapter.config.get('lora_alpha')}, {len(adapter.targets)} weights adapted)."
                if adapter else "."),
             *_readme_lines(base),
             "", "Built with `jmedllm convert build`; see `manifest.json` for input and output hashes.", "",
             "| file | size | sha256 |", "|---|---|---|"]
    for out in manifest["outputs"]:
        lines.append(f"| {out['file']} | {out['size'] / 1024**2:.0f} MiB | `{out['sha256'][:16]}…` |")
    report = manifest.get("verification")
    if report:
        conv, tok = report["conversion"], report["tokenizer"]
        lines += ["", "## Verification", "",
                  f"- tokenizer parity (Hugging Face vs llama.cpp): {tok['probes'] - len(tok['mismatches'])}/"
                  f"{tok['probes']} bilingual probes identical",
                  f"- conversion parity ({conv['gguf']} vs the peft-merged model): top-1 agreement "
                  f"{conv['top1_agreement']:.3f}, normalized MSE {conv['nmse']:.2e}, "
                  f"max |diff| {conv['max_abs_diff']:.3f}"]
        for quant_type, entry in report.get("quantization", {}).get("types", {}).items():
            lines.append(f"- {quant_type} vs F16: mean KL {entry['mean_kl']:.4f}, top-1 {entry['top1_agreement']:.3f}, "
                         f"perplexity ratio {entry['ppl_ratio']:.4f}")
        lines.append(f"- overall: {'PASS' if report['passed'] else 'FAIL'}")
    lines += ["", "Not a medical device. Outputs must be checked by a qualified clinician.", ""]
    return "\n".join(lines)


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse ``out_dir`` before any work when its parent folder is missing, when it holds files that are
    not a build's, or when it holds an earlier build (unless ``overwrite``).

    A build's files are its reports and, beside its manifest, GGUF files. Hidden staging folders
    (``.build-*``) count as nothing: one left by a killed build is not removed, since it may belong to a
    build still running into the same folder.
    """
    if not out_dir.exists():
        if not out_dir.parent.is_dir():
            raise ConvertError(f"cannot create --out {out_dir}: the folder {out_dir.parent} does not exist")
        return
    if not out_dir.is_dir():
        raise ConvertError(f"--out {out_dir} is a file, not a folder")
    names = {p.name for p in out_dir.iterdir() if not (p.name.startswith(STAGE_PREFIX) and p.is_dir())}
    foreign = sorted(n for n in names if n not in REPORTS and not (MANIFEST in names and n.endswith(".gguf")))
    if foreign:
        raise ConvertError(f"--out {out_dir} holds files that are not from a build: {', '.join(foreign[:5])}; "
                           "choose an empty or new folder")
    if names and not overwrite:
        raise ConvertError(f"--out {out_dir} holds an earlier build; pass --overwrite to replace it, "
                           "or choose another folder")


def build(base_dir: Path, adapter_dir: Path | None, out_dir: Path, quant_types: list[str], out_type: str = "f16",
          name: str = "JMedLLM", merged_dir: Path | None = None, verify: bool = True,
          threads: int | None = None, progress: bool = True, overwrite: bool = False) -> BuildResult:
    """Check ``out_dir`` (:func:`check_out_dir`), run the whole pipeline into a staging folder inside it,
    then publish it (:func:`publish`): an interrupted or failed build leaves nothing in ``out_dir``, a
    build that fails verification leaves only its reports there."""
    started = time.time()
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)
    if merged_dir is not None:
        check_new_folder(Path(merged_dir))
    base = open_base(base_dir)
    adapter = open_adapter(adapter_dir, base) if adapter_dir else None
    require_free_space(out_dir, estimate_disk(base, out_type, quant_types, merged_dir is not None))
    if merged_dir is not None:
        require_free_space(Path(merged_dir), sum(entry.nbytes for entry in base.tensors.values()))
    out_dir.mkdir(exist_ok=True)
    stem = name.replace(" ", "-")
    if merged_dir is not None:
        save_merged(base, adapter, Path(merged_dir), progress=progress)
    with staging_dir(out_dir) as stage:
        gguf_path = export_gguf(base, adapter, stage / f"{stem}-{out_type}.gguf", out_type, name, progress)
        quantized = {q: quantize(gguf_path, stage / f"{stem}-{q.lower()}.gguf", q, threads, progress)
                     for q in quant_types}
        report = None
        if verify:
            report = run_verification(base.path, adapter.path if adapter else None, gguf_path, base.n_params(),
                                      quantized)
            write_json_atomic(stage / VERIFICATION, report)
        outputs = [gguf_path, *quantized.values()]
        manifest = {
            "name": name,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_s": round(time.time() - started, 1),
            "inputs": {"base": _hash_inputs(base.path, base.weight_files),
                       "adapter": _hash_inputs(adapter.path, []) if adapter else None,
                       "lora": {"targets": len(adapter.targets), "r": adapter.config.get("r"),
                                "lora_alpha": adapter.config.get("lora_alpha"),
                                "use_rslora": bool(adapter.config.get("use_rslora"))} if adapter else None},
            "settings": {"out_type": out_type, "quant_types": quant_types,
                         "merged_dir": str(merged_dir) if merged_dir else None},
            "tools": library_versions(),
            "outputs": [_describe_output(p) for p in outputs],
            "verification": report,
        }
        write_json_atomic(stage / MANIFEST, manifest)
        with atomic_writer(stage / MODEL_CARD) as handle:
            handle.write(model_card(name, base, adapter, manifest).encode("utf-8"))
        result = BuildResult(outputs, report, stage / MANIFEST)
        raise_if_interrupted()
        return publish(stage, out_dir, result)


@contextlib.contextmanager
def staging_dir(out_dir: Path) -> Iterator[Path]:
    """A hidden folder inside ``out_dir`` for a build's files, removed when the block ends (whatever happens)."""
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=out_dir))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, out_dir: Path, result: BuildResult) -> BuildResult:
    """Move a finished build from ``stage`` into ``out_dir`` (renames on one file system), reports first.

    The reports of an earlier build that this one does not write are removed, so the folder never holds
    a verification of other files. A build that failed verification publishes its reports only: its
    GGUFs are not kept under names that could be imported by mistake.
    """
    for report in REPORTS:
        if not (stage / report).exists():
            (out_dir / report).unlink(missing_ok=True)
    kept = result.outputs if result.passed else []
    for path in [*(stage / report for report in REPORTS), *kept]:
        if path.exists():
            os.replace(path, out_dir / path.name)
    return BuildResult([out_dir / p.name for p in kept], result.report, out_dir / MANIFEST)
