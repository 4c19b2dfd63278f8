"""Throughput of the IgakuQA benchmark modes on the same questions, in one run.

(a) the paper's procedure: greedy, 256 new tokens, then the first line;
(b) this app's generate mode: greedy, stopped as soon as the first line is complete;
(c) the choice log-likelihood mode.

The three modes alternate question by question, so load from other work on the machine hits them
alike. Prints questions per minute, the ratios, and whether (a) and (b) picked identical answers
(exit status 1 if not).

    .venv/bin/python scripts/bench_igakuqa.py --questions 20 --lang ja
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.bench.data import load_dataset  # noqa: E402
from app.bench.runner import RunConfig, answer_question  # noqa: E402
from app.bench.sets import SetSpec, select  # noqa: E402
from app.engine import Engine  # noqa: E402
from app.models import resolve_model  # noqa: E402

MODES = {"a_paper_256": "paper", "b_generate_first_line": "generate", "c_loglik": "loglik"}


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
    engine = Engine.load(resolve_model(args.model, progress=False), n_gpu_layers=gpu_layers, n_ctx=args.ctx)
    print(f"{engine.card.file_name} ({engine.card.quantization}) on {engine.device}; {len(questions)} "
          f"quick-set questions, {args.lang}, 0-shot, paper template", flush=True)

    seconds = {name: 0.0 for name in MODES}
    tokens = {name: 0 for name in MODES}
    picks: dict[str, list[tuple[str, str, int]]] = {name: [] for name in MODES}
    for i, question in enumerate(questions, start=1):
        for name, mode in MODES.items():
            config = RunConfig(SetSpec("quick"), (args.lang,), mode=mode)
            start = time.perf_counter()
            row = answer_question(engine, question, args.lang, config)
            seconds[name] += time.perf_counter() - start
            assert row is not None
            tokens[name] += row["completion_tokens"] or 0
            picks[name].append((row["response"], row["picked"], row["gestalt_paper"]))
        print(f"  {i:>2}/{len(questions)} {question.problem_id}: paper {picks['a_paper_256'][-1][1] or '-'} · "
              f"generate {picks['b_generate_first_line'][-1][1] or '-'} · loglik {picks['c_loglik'][-1][1]}", flush=True)

    qpm = {name: len(questions) / seconds[name] * 60 for name in MODES}
    accuracy = {name: sum(p[2] for p in picks[name]) / len(questions) for name in MODES}
    identical = picks["a_paper_256"] == picks["b_generate_first_line"]
    print()
    print(f"{'mode':<24} {'q/min':>8} {'s/question':>11} {'new tokens':>11} {'gestalt_paper':>14}")
    for name in MODES:
        print(f"{name:<24} {qpm[name]:>8.2f} {seconds[name] / len(questions):>11.2f} {tokens[name]:>11} "
              f"{accuracy[name] * 100:>13.1f}%")
    ratio_b = qpm["b_generate_first_line"] / qpm["a_paper_256"]
    ratio_c = qpm["c_loglik"] / qpm["a_paper_256"]
    print(f"\n(b)/(a) = {ratio_b:.2f}x (target >= 5)   (c)/(a) = {ratio_c:.2f}x")
    print(f"(a) and (b) picked identical answers: {'yes' if identical else 'NO'}")
    if not identical:
        for n, (a, b) in enumerate(zip(picks["a_paper_256"], picks["b_generate_first_line"])):
            if a != b:
                print(f"  differs on {questions[n].problem_id}: {a} vs {b}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "model": engine.card.file_name, "device": engine.device, "questions": len(questions),
            "language": args.lang, "questions_per_minute": qpm, "seconds": seconds, "new_tokens": tokens,
            "ratio_b_over_a": ratio_b, "ratio_c_over_a": ratio_c, "identical_a_b": identical,
            "gestalt_paper_accuracy": accuracy}, indent=1))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
