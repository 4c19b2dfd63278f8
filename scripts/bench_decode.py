#!/usr/bin/env python
"""Decode speed of the app's engine path against bare ``llama_cpp.Llama``, side by side.

Both load the same GGUF with the same settings (context, threads, GPU layers, greedy sampling,
same prompt, full prompt evaluation every run) and alternate run by run, so the machine's state
affects both alike. Prints time to first token, decode tokens/s, and the app/bare ratios.

    .venv/bin/python scripts/bench_decode.py --model demo --tokens 128 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import llama_cpp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engines.base import Sampling
from app.engines.local import LocalEngine
from app.models import resolve_model

if TYPE_CHECKING:
    from collections.abc import Iterator

    from llama_cpp.llama_types import CreateCompletionStreamResponse

PROMPT = (
    "<|im_start|>system\nYou are a clinical decision-support assistant.<|im_end|>\n"
    "<|im_start|>user\nExplain the first-line management of community-acquired pneumonia in adults, "
    "step by step, in detail.<|im_end|>\n<|im_start|>assistant\n"
)


def run_app(engine: LocalEngine, tokens: int) -> tuple[str, int, float, float]:
    """(text, tokens, time to first token, total seconds) through the app's engine."""
    start = time.perf_counter()
    generation = engine.stream(PROMPT, Sampling.greedy(max_tokens=tokens))
    first = None
    for _ in generation:
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return generation.text, generation.stats.completion_tokens, first or total, total


def run_bare(llm: llama_cpp.Llama, tokens: int) -> tuple[str, float, float]:
    """(text, time to first token, total seconds) through bare llama-cpp-python."""
    start = time.perf_counter()
    llm.reset()
    first = None
    pieces = []
    # stream=True yields chunks; llama-cpp-python annotates the union of both return kinds
    chunks = cast("Iterator[CreateCompletionStreamResponse]", llm.create_completion(
        PROMPT, max_tokens=tokens, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0, seed=1234,
        stream=True))
    for chunk in chunks:
        if first is None:
            first = time.perf_counter() - start
        pieces.append(chunk["choices"][0]["text"])
    total = time.perf_counter() - start
    return "".join(pieces), first or total, total


def decode_rate(tokens: int, first: float, total: float) -> float:
    return (tokens - 1) / (total - first) if total > first and tokens > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo", help='GGUF path or "demo"')
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--gpu-layers", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    path = resolve_model(args.model)
    layers = args.gpu_layers if args.gpu_layers == "auto" else int(args.gpu_layers)
    engine = LocalEngine.load(path, n_gpu_layers=layers, n_ctx=args.ctx, n_threads=args.threads)
    bare = llama_cpp.Llama(model_path=str(path), n_gpu_layers=engine.gpu_layers, n_ctx=args.ctx,
                           n_threads=engine.n_threads, n_threads_batch=engine.n_threads, seed=1234,
                           verbose=False)
    print(f"model {path.name} ({engine.card.quantization}), {engine.device}, ctx {args.ctx}, "
          f"{args.tokens} new tokens, {args.runs} runs each, alternating; llama-cpp-python {llama_cpp.__version__}")
    run_app(engine, 8)  # warm both paths once
    run_bare(bare, 8)

    app_ttft, app_rate, bare_ttft, bare_rate = [], [], [], []
    for _ in range(args.runs):
        app_text, count, first, total = run_app(engine, args.tokens)
        app_ttft.append(first)
        app_rate.append(decode_rate(count, first, total))
        bare_text, first, total = run_bare(bare, args.tokens)
        if bare_text != app_text:
            raise SystemExit("the two paths produced different text: the comparison is not like for like")
        bare_ttft.append(first)
        bare_rate.append(decode_rate(count, first, total))

    med = statistics.median
    print(f"{'path':<22}{'TTFT ms (median)':>18}{'decode tok/s (median)':>24}")
    print(f"{'app engine':<22}{med(app_ttft) * 1000:>18.1f}{med(app_rate):>24.2f}")
    print(f"{'bare llama_cpp.Llama':<22}{med(bare_ttft) * 1000:>18.1f}{med(bare_rate):>24.2f}")
    print(f"decode ratio app/bare: {med(app_rate) / med(bare_rate):.3f}   (target >= 0.95)")
    print(f"TTFT ratio app/bare:   {med(app_ttft) / med(bare_ttft):.3f}   (lower is better)")


if __name__ == "__main__":
    main()
