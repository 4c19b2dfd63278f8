"""Throughput of every IgakuQA benchmark mode (app.bench.modes.MODES) on the same questions, in one run.

The reference is the paper's procedure (mode ``paper``: greedy, 256 new tokens, then the first
line); the default ``generate`` mode (greedy, stopped as soon as the first line is complete) must
pick identical answers; ``loglik`` scores the choices by log-likelihood.

The modes alternate question by question, so load from other work on the machine hits them
alike. Prints questions per minute, each mode's ratio to the paper's procedure, and whether the
default mode picked the paper's answers (exit status 1 if not).

    .venv/bin/python scripts/bench_igakuqa.py --questions 20 --lang ja
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.bench.metrics import PRIMARY
from app.bench.modes import DEFAULT_MODE, MODES
from app.bench.runner import RunConfig, answer_question
from app.bench.sets import SetSpec, select
from app.bench.sources import load_dataset
from app.engines.local import LocalEngine
from app.models import resolve_model

REFERENCE = "paper"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--lang", choices=["ja", "en"], default="ja")
    parser.add_argument("--gpu-layers", default="0")
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", dest="json_out", default=None, help="Also write the figures here.")
    args = parser.parse_args()

    dataset = load_dataset(args.data_dir)
    questions = select(dataset, SetSpec("quick", quick_size=args.questions))
    gpu_layers = args.gpu_layers if args.gpu_layers == "auto" else int(args.gpu_layers)
    engine = LocalEngine.load(resolve_model(args.model, progress=False), n_gpu_layers=gpu_layers, n_ctx=args.ctx)
    print(f"{engine.card.file_name} ({engine.card.quantization}) on {engine.device}; {len(questions)} "
          f"quick-set questions, {args.lang}, 0-shot, paper template", flush=True)

    seconds = {name: 0.0 for name in MODES}
    tokens = {name: 0 for name in MODES}
    picks: dict[str, list[tuple[str, str, int]]] = {name: [] for name in MODES}
    for i, question in enumerate(questions, start=1):
        for name in MODES:
            config = RunConfig(SetSpec("quick"), (args.lang,), mode=name)
            start = time.perf_counter()
            row = answer_question(engine, question, args.lang, config)
            seconds[name] += time.perf_counter() - start
            if row is None:
                raise SystemExit(f"{name} returned no answer for {question.problem_id}")
            tokens[name] += row["completion_tokens"] or 0
            picks[name].append((row["response"], row["picked"], row[PRIMARY]))
        print(f"  {i:>2}/{len(questions)} {question.problem_id}: "
              + " · ".join(f"{name} {picks[name][-1][1] or '-'}" for name in MODES), flush=True)

    qpm = {name: len(questions) / seconds[name] * 60 for name in MODES}
    accuracy = {name: sum(p[2] for p in picks[name]) / len(questions) for name in MODES}
    ratios = {name: qpm[name] / qpm[REFERENCE] for name in MODES if name != REFERENCE}
    identical = picks[REFERENCE] == picks[DEFAULT_MODE]
    print()
    print(f"{'mode':<24} {'q/min':>8} {'s/question':>11} {'new tokens':>11} {PRIMARY:>14}")
    for name in MODES:
        print(f"{name:<24} {qpm[name]:>8.2f} {seconds[name] / len(questions):>11.2f} {tokens[name]:>11} "
              f"{accuracy[name] * 100:>13.1f}%")
    print("\n" + "   ".join(f"{name}/{REFERENCE} = {ratio:.2f}x" for name, ratio in ratios.items())
          + f"   (target for {DEFAULT_MODE}: >= 5)")
    print(f"{REFERENCE} and {DEFAULT_MODE} picked identical answers: {'yes' if identical else 'NO'}")
    if not identical:
        for n, (a, b) in enumerate(zip(picks[REFERENCE], picks[DEFAULT_MODE], strict=True)):
            if a != b:
                print(f"  differs on {questions[n].problem_id}: {a} vs {b}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "model": engine.card.file_name, "device": engine.device, "questions": len(questions),
            "language": args.lang, "questions_per_minute": qpm, "seconds": seconds, "new_tokens": tokens,
            "ratio_to_paper": ratios, "identical_paper_generate": identical,
            f"{PRIMARY}_accuracy": accuracy}, indent=1))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
