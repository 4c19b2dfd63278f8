"""Verification: tokenizer parity, conversion parity (GGUF vs Hugging Face logits) and
quantization quality (KL divergence, top-1 agreement, perplexity ratio against F16).

The Hugging Face reference is built with peft's own ``merge_and_unload``, independently of the
streaming merge, so it checks the whole pipeline. Each model is loaded alone and freed before the
next one, to keep the peak memory at one model.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.atomic import write_json_atomic
from model_tools.probes import CONVERSION_PROBES, PERPLEXITY_TEXT, TOKENIZER_PROBES

if TYPE_CHECKING:
    import llama_cpp
    import numpy as np
    from transformers import PreTrainedTokenizerBase

# Conversion parity: normalized MSE of logits (sum (a-b)^2 / sum b^2) and top-1 agreement, by the
# dtype the reference could be run in. A float32 reference needs 4 bytes per parameter; when that
# does not fit (a 7B on 24 GiB), the bfloat16 reference's own rounding noise (measured 1.9e-4 NMSE,
# 96% top-1 on Qwen2.5-0.5B against a correct F16 file) needs the looser limits.
CONVERSION_LIMITS = {"float32": (1e-4, 0.95), "bfloat16": (1e-3, 0.90)}


@dataclass(frozen=True)
class QuantThreshold:
    """Limits for one quantization type against F16 (looser than llama.cpp's 7-8B figures)."""

    max_kl: float
    min_top1: float
    max_ppl_ratio: float


QUANT_THRESHOLDS = {
    "Q8_0": QuantThreshold(0.01, 0.95, 1.01),
    "Q6_K": QuantThreshold(0.03, 0.92, 1.03),
    "Q5_K_M": QuantThreshold(0.06, 0.88, 1.06),
    "Q4_K_M": QuantThreshold(0.12, 0.85, 1.12),
}


def _free() -> None:
    gc.collect()


def _llama(path: Path, n_ctx: int, logits: bool = True, vocab_only: bool = False) -> llama_cpp.Llama:
    import llama_cpp

    return llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=logits, vocab_only=vocab_only,
                           n_gpu_layers=0, verbose=False)


def hf_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False, local_files_only=True)


def tokenizer_parity(model_dir: Path, gguf_path: Path, texts: tuple[str, ...] = TOKENIZER_PROBES) -> dict[str, Any]:
    """Token ids from Hugging Face and llama.cpp on each probe (special tokens parsed in both)."""
    tokenizer = hf_tokenizer(model_dir)
    llm = _llama(gguf_path, 256, logits=False, vocab_only=True)
    mismatches = []
    for text in texts:
        hf_ids = tokenizer.encode(text, add_special_tokens=False)
        cpp_ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if list(hf_ids) != list(cpp_ids):
            mismatches.append({"text": text, "hf": list(hf_ids), "llama_cpp": list(cpp_ids)})
    eos = llm.token_eos()
    template_ok = bool(llm.metadata.get("tokenizer.chat_template"))
    del llm
    _free()
    return {"probes": len(texts), "mismatches": mismatches, "eos_token": tokenizer.convert_ids_to_tokens(eos),
            "chat_template": template_ok, "passed": not mismatches and template_ok}


def _memory_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def reference_logits(base_dir: Path, adapter_dir: Path | None, prompts: list[list[int]],
                     n_params: int) -> tuple[list[np.ndarray], str]:
    """Logits of the peft-merged Hugging Face model: float32 when it fits in memory, else bfloat16."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if n_params * 4 < 0.7 * _memory_available() else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype, trust_remote_code=False,
                                                 local_files_only=True, use_safetensors=True)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.eval()
    out = []
    with torch.inference_mode():
        for ids in prompts:
            logits = model(torch.tensor([ids])).logits[0]
            out.append(logits.float().numpy().copy())
    del model
    _free()
    return out, str(dtype).removeprefix("torch.")


def gguf_logits(gguf_path: Path, prompts: list[list[int]]) -> list[np.ndarray]:
    """Logits of every position for each prompt, from llama.cpp."""
    import numpy as np

    n_ctx = max(64, max(len(p) for p in prompts) + 8)
    llm = _llama(gguf_path, n_ctx)
    out = []
    for ids in prompts:
        llm.reset()
        llm.eval(ids)
        out.append(np.array(llm.scores[: len(ids)], dtype=np.float32))
    del llm
    _free()
    return out


def conversion_parity(model_dir: Path, adapter_dir: Path | None, gguf_path: Path, n_params: int,
                      prompts: tuple[str, ...] = CONVERSION_PROBES) -> dict[str, Any]:
    """Next-token logits of the GGUF in llama.cpp against the peft-merged Hugging Face model."""
    import numpy as np

    tokenizer = hf_tokenizer(model_dir)
    ids = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    reference, ref_dtype = reference_logits(model_dir, adapter_dir, ids, n_params)
    candidate = gguf_logits(gguf_path, ids)
    err = sum(float(((a - b).astype(np.float64) ** 2).sum()) for a, b in zip(candidate, reference, strict=True))
    norm = sum(float((b.astype(np.float64) ** 2).sum()) for b in reference)
    agree = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(candidate, reference, strict=True))
    positions = sum(len(i) for i in ids)
    result: dict[str, Any] = {
        "gguf": Path(gguf_path).name, "reference_dtype": ref_dtype, "positions": positions,
        "top1_agreement": agree / positions,
        "max_abs_diff": max(float(np.abs(a - b).max()) for a, b in zip(candidate, reference, strict=True)),
        "nmse": err / norm,
    }
    max_nmse, min_top1 = CONVERSION_LIMITS[ref_dtype]
    result["thresholds"] = {"max_nmse": max_nmse, "min_top1": min_top1}
    result["passed"] = result["nmse"] <= max_nmse and result["top1_agreement"] >= min_top1
    return result


def quant_quality(f16_path: Path, quant_paths: dict[str, Path], text: str = PERPLEXITY_TEXT) -> dict[str, Any]:
    """Mean KL(F16 || quant), top-1 agreement and perplexity ratio over ``text``, per quantized file."""
    import numpy as np

    from app.numeric import log_softmax

    llm = _llama(f16_path, 64, logits=False, vocab_only=True)
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    del llm
    targets = np.array(ids[1:])
    (ref,) = gguf_logits(f16_path, [ids])
    ref_lp = log_softmax(ref[:-1])
    ref_ppl = float(np.exp(-ref_lp[np.arange(len(targets)), targets].mean()))
    del ref
    results: dict[str, Any] = {"text_tokens": len(ids), "f16_perplexity": ref_ppl, "types": {}}
    for quant_type, path in quant_paths.items():
        (logits,) = gguf_logits(path, [ids])
        lp = log_softmax(logits[:-1])
        kl = float((np.exp(ref_lp) * (ref_lp - lp)).sum(-1).mean())
        ppl = float(np.exp(-lp[np.arange(len(targets)), targets].mean()))
        limit = QUANT_THRESHOLDS[quant_type]
        entry: dict[str, Any] = {
            "file": Path(path).name, "mean_kl": kl,
            "top1_agreement": float((lp.argmax(-1) == ref_lp.argmax(-1)).mean()),
            "perplexity": ppl, "ppl_ratio": ppl / ref_ppl,
            "thresholds": {"max_kl": limit.max_kl, "min_top1": limit.min_top1, "max_ppl_ratio": limit.max_ppl_ratio},
        }
        entry["passed"] = (kl <= limit.max_kl and entry["top1_agreement"] >= limit.min_top1
                           and entry["ppl_ratio"] <= limit.max_ppl_ratio)
        results["types"][quant_type] = entry
        del logits, lp
        _free()
    results["passed"] = all(e["passed"] for e in results["types"].values())
    return results


def run_verification(model_dir: Path, adapter_dir: Path | None, gguf_path: Path, n_params: int,
                     quant_paths: dict[str, Path]) -> dict[str, Any]:
    """All checks; ``report["passed"]`` is False when any threshold fails."""
    report: dict[str, Any] = {
        "tokenizer": tokenizer_parity(model_dir, gguf_path),
        "conversion": conversion_parity(model_dir, adapter_dir, gguf_path, n_params),
    }
    if quant_paths:
        report["quantization"] = quant_quality(gguf_path, quant_paths)
    report["passed"] = all(section["passed"] for section in report.values())
    return report


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of the verification results."""
    mark = {True: "PASS", False: "FAIL"}
    tok = report["tokenizer"]
    conv = report["conversion"]
    lines = [
        f"{'check':<34}{'value':>14}  {'limit':>10}  result",
        f"{'tokenizer parity (mismatches)':<34}{len(tok['mismatches']):>14}  {0:>10}  {mark[tok['passed']]}",
        f"{'chat template present':<34}{str(tok['chat_template']):>14}  {'True':>10}  {mark[tok['chat_template']]}",
        f"{'conversion nmse':<34}{conv['nmse']:>14.3e}  {conv['thresholds']['max_nmse']:>10.0e}  "
        f"{mark[conv['nmse'] <= conv['thresholds']['max_nmse']]}",
        f"{'conversion top-1 agreement':<34}{conv['top1_agreement']:>14.4f}  {conv['thresholds']['min_top1']:>10.2f}  "
        f"{mark[conv['top1_agreement'] >= conv['thresholds']['min_top1']]}",
        f"{'conversion max |diff|':<34}{conv['max_abs_diff']:>14.4f}  {'-':>10}",
    ]
    for quant_type, entry in report.get("quantization", {}).get("types", {}).items():
        t = entry["thresholds"]
        lines += [
            f"{quant_type + ' mean KL vs F16':<34}{entry['mean_kl']:>14.5f}  {t['max_kl']:>10.3f}  "
            f"{mark[entry['mean_kl'] <= t['max_kl']]}",
            f"{quant_type + ' top-1 agreement':<34}{entry['top1_agreement']:>14.4f}  {t['min_top1']:>10.2f}  "
            f"{mark[entry['top1_agreement'] >= t['min_top1']]}",
            f"{quant_type + ' perplexity ratio':<34}{entry['ppl_ratio']:>14.4f}  {t['max_ppl_ratio']:>10.3f}  "
            f"{mark[entry['ppl_ratio'] <= t['max_ppl_ratio']]}",
        ]
    lines.append(f"overall: {mark[report['passed']]}")
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write the JSON report atomically (the ``--report`` file of ``jmedllm convert verify``)."""
    write_json_atomic(path, report)
