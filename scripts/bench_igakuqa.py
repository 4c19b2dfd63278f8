"""Throughput of IgakuQA benchmark settings on the same questions, in one run.

``--compare modes`` (the default): every benchmark mode (app.bench.modes.MODES). The reference is
the paper's procedure (mode ``paper``: greedy, 256 new tokens, then the first line); the default
``generate`` mode (greedy, stopped as soon as the first line is complete) must pick identical
answers; ``loglik`` scores the choices by log-likelihood. Prints questions per minute, each mode's
ratio to the paper's procedure, and whether the default mode picked the paper's answers.

``--compare reuse``: the default mode (or ``--mode``) with and without reusing the prompt prefix
the questions share (``RunConfig.reuse_prefix``), 0-shot and 3-shot. Prints questions per minute
both ways, the ratio (targets: 3-shot >= 2x, 0-shot >= 1.2x), and every question whose pick or raw
output differs.
The ratio covers every question, the first of each language included (where the prefix is
evaluated once, as at a run's start); "after the first" leaves those out: what each further
question of a longer run gains.
A "question" is one question in one language, as in a run's questions per minute. Between two
questions of one language the other language's and the other setting's are asked, so every reused
prefix is put back from the engine's kept state, as in a run in both languages. ``--answer-tokens N``
caps every answer at N new tokens both ways: for a model that never ends its first line, such as
the random-weight one of ``scripts/make_random_7b.py``, it stands in for a real model's answer length.

The settings alternate question by question, so load from other work on the machine hits them
alike. Exit status 1 if any answer differs.

    .venv/bin/python scripts/bench_igakuqa.py --questions 20 --lang ja
    .venv/bin/python scripts/bench_igakuqa.py --compare reuse --questions 20 --lang both
    .venv/bin/python scripts/bench_igakuqa.py --compare reuse --model /tmp/random-7b-q4_k_m.gguf \
        --answer-tokens 16 --questions 6 --lang ja
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.bench.data import Question
from app.bench.metrics import PRIMARY
from app.bench.modes import DEFAULT_MODE, MODES
from app.bench.prompting import PAPER_MAX_TOKENS
from app.bench.runner import LANGUAGES, RunConfig, answer_question, forget_prefixes
from app.bench.sets import SetSpec, select
from app.bench.sources import load_dataset
from app.engines.base import Engine
from app.engines.local import LocalEngine
from app.models import resolve_model

REFERENCE = "paper"
REUSE_TARGETS = {0: 1.2, 3: 2.0}  # questions per minute with reuse over without, by shots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--compare", choices=["modes", "reuse"], default="modes")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--lang", choices=["ja", "en", "both"], default="ja")
    parser.add_argument("--gpu-layers", default="0")
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core).")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--shots", type=int, action="append", choices=sorted(REUSE_TARGETS),
                        help="--compare reuse: only these shot counts (repeatable; default: 0 and 3).")
    parser.add_argument("--mode", choices=sorted(MODES), default=DEFAULT_MODE,
                        help="--compare reuse: the mode run both ways (default: %(default)s).")
    parser.add_argument("--answer-tokens", type=int, default=PAPER_MAX_TOKENS,
                        help="--compare reuse: new tokens at most per answer (default: the paper's 256).")
    parser.add_argument("--json", dest="json_out", default=None, help="Also write the figures here.")
    args = parser.parse_args()

    dataset = load_dataset(args.data_dir)
    questions = select(dataset, SetSpec("quick", quick_size=args.questions))
    languages = LANGUAGES if args.lang == "both" else (args.lang,)
    items = [(q, lang) for q in questions for lang in languages if lang in q.languages]
    gpu_layers = args.gpu_layers if args.gpu_layers == "auto" else int(args.gpu_layers)
    engine = LocalEngine.load(resolve_model(args.model, progress=False), n_gpu_layers=gpu_layers, n_ctx=args.ctx,
                              n_threads=args.threads)
    print(f"{engine.card.file_name} ({engine.card.quantization}) on {engine.device}; {len(questions)} "
          f"quick-set questions, {args.lang}, paper template", flush=True)
    if args.compare == "modes":
        identical, figures = compare_modes(engine, items)
    else:
        identical, figures = compare_reuse(engine, items, args.mode, args.answer_tokens,
                                           args.shots or sorted(REUSE_TARGETS))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "model": engine.card.file_name, "device": engine.device, "questions": len(questions),
            "language": args.lang, **figures}, indent=1))
    return 0 if identical else 1


def compare_modes(engine: Engine, items: list[tuple[Question, str]]) -> tuple[bool, dict]:
    """Every mode on ``items``, 0-shot, every prompt evaluated from scratch; whether the default mode
    picked the paper's answers, and the figures."""
    print("0-shot, every mode", flush=True)
    seconds = {name: 0.0 for name in MODES}
    tokens = {name: 0 for name in MODES}
    picks: dict[str, list[tuple[str, str, int]]] = {name: [] for name in MODES}
    for i, (question, language) in enumerate(items, start=1):
        for name in MODES:
            config = RunConfig(SetSpec("quick"), (language,), mode=name, reuse_prefix=False)
            start = time.perf_counter()
            row = answer_question(engine, question, language, config)
            seconds[name] += time.perf_counter() - start
            if row is None:
                raise SystemExit(f"{name} returned no answer for {question.problem_id}")
            tokens[name] += row["completion_tokens"] or 0
            picks[name].append((row["response"], row["picked"], row[PRIMARY]))
        print(f"  {i:>2}/{len(items)} {question.problem_id} {language}: "
              + " · ".join(f"{name} {picks[name][-1][1] or '-'}" for name in MODES), flush=True)

    qpm = {name: len(items) / seconds[name] * 60 for name in MODES}
    accuracy = {name: sum(p[2] for p in picks[name]) / len(items) for name in MODES}
    ratios = {name: qpm[name] / qpm[REFERENCE] for name in MODES if name != REFERENCE}
    identical = picks[REFERENCE] == picks[DEFAULT_MODE]
    print()
    print(f"{'mode':<24} {'q/min':>8} {'s/question':>11} {'new tokens':>11} {PRIMARY:>14}")
    for name in MODES:
        print(f"{name:<24} {qpm[name]:>8.2f} {seconds[name] / len(items):>11.2f} {tokens[name]:>11} "
              f"{accuracy[name] * 100:>13.1f}%")
    print("\n" + "   ".join(f"{name}/{REFERENCE} = {ratio:.2f}x" for name, ratio in ratios.items())
          + f"   (target for {DEFAULT_MODE}: >= 5)")
    print(f"{REFERENCE} and {DEFAULT_MODE} picked identical answers: {'yes' if identical else 'NO'}")
    if not identical:
        for n, (a, b) in enumerate(zip(picks[REFERENCE], picks[DEFAULT_MODE], strict=True)):
            if a != b:
                print(f"  differs on {items[n][0].problem_id} {items[n][1]}: {a} vs {b}")
    return identical, {"questions_per_minute": qpm, "seconds": seconds, "new_tokens": tokens,
                       "ratio_to_paper": ratios, "identical_paper_generate": identical,
                       f"{PRIMARY}_accuracy": accuracy}


def compare_reuse(engine: Engine, items: list[tuple[Question, str]], mode: str, max_tokens: int,
                  shot_counts: list[int]) -> tuple[bool, dict]:
    """``mode`` with and without prefix reuse on ``items`` for each of ``shot_counts``,
    answers capped at ``max_tokens``; whether every raw output and pick was the same both ways, and
    the figures."""
    figures: dict[int, dict] = {}
    languages = [language for _, language in items]
    firsts = {languages.index(language) for language in set(languages)}  # where a language's prefix is first evaluated
    for shots in shot_counts:
        print(f"{shots}-shot, {mode} mode, without and with prefix reuse", flush=True)
        configs = {reuse: RunConfig(SetSpec("quick"), LANGUAGES, mode=mode, shots=shots, max_tokens=max_tokens,
                                    reuse_prefix=reuse) for reuse in (False, True)}
        each: dict[bool, list[float]] = {False: [], True: []}
        rows: dict[bool, list[dict]] = {False: [], True: []}
        for i, (question, language) in enumerate(items, start=1):
            for reuse in ((False, True) if i % 2 else (True, False)):
                start = time.perf_counter()
                row = answer_question(engine, question, language, configs[reuse])
                each[reuse].append(time.perf_counter() - start)
                if row is None:
                    raise SystemExit(f"no answer for {question.problem_id} {language}")
                rows[reuse].append(row)
            print(f"  {i:>2}/{len(items)} {question.problem_id} {language}: "
                  + " · ".join(f"{'reuse' if reuse else 'scratch'} {rows[reuse][-1]['picked'] or '-'} "
                               f"{rows[reuse][-1]['latency_s']:.2f}s" for reuse in (False, True)), flush=True)
        forget_prefixes(engine, configs[True], items)
        seconds = {reuse: sum(each[reuse]) for reuse in (False, True)}
        later = {reuse: sum(s for n, s in enumerate(each[reuse]) if n not in firsts) for reuse in (False, True)}
        qpm = {reuse: len(items) / seconds[reuse] * 60 for reuse in (False, True)}
        differs = [(question.problem_id, language, scratch["picked"], reused["picked"],
                    scratch["raw_output"], reused["raw_output"])
                   for (question, language), scratch, reused in zip(items, rows[False], rows[True], strict=True)
                   if (scratch["picked"], scratch["raw_output"]) != (reused["picked"], reused["raw_output"])]
        figures[shots] = {"questions_per_minute": {"scratch": qpm[False], "reuse": qpm[True]},
                          "seconds": {"scratch": seconds[False], "reuse": seconds[True]},
                          "ratio": qpm[True] / qpm[False], "target": REUSE_TARGETS[shots],
                          "ratio_after_first": later[False] / later[True] if later[True] else None,
                          "prompt_tokens": sum(r["prompt_tokens"] for r in rows[True]) / len(items),
                          "answer_tokens": sum(r["completion_tokens"] or 0 for r in rows[True]) / len(items),
                          "differences": differs}
    print()
    print(f"{'shots':<6} {'prompt tokens':>13} {'answer tokens':>13} {'q/min scratch':>14} {'q/min reuse':>12} "
          f"{'ratio':>7} {'after the first':>16} {'target':>7} {'differences':>12}")
    for shots, f in figures.items():
        print(f"{shots:<6} {f['prompt_tokens']:>13.0f} {f['answer_tokens']:>13.1f} "
              f"{f['questions_per_minute']['scratch']:>14.2f} "
              f"{f['questions_per_minute']['reuse']:>12.2f} {f['ratio']:>6.2f}x "
              f"{(f'{ratio:.2f}x' if (ratio := f['ratio_after_first']) else '-'):>16} {f['target']:>6.1f}x "
              f"{len(f['differences']):>12}")
    identical = not any(f["differences"] for f in figures.values())
    print(f"\nidentical raw outputs and picks with and without reuse: {'yes' if identical else 'NO'}")
    for shots, f in figures.items():
        for pid, language, picked_scratch, picked_reuse, raw_scratch, raw_reuse in f["differences"]:
            print(f"  {shots}-shot {pid} {language}: picked {picked_scratch or '-'} vs {picked_reuse or '-'}; "
                  f"raw {raw_scratch!r} vs {raw_reuse!r}")
    return identical, {"reuse": figures, "mode": mode}


if __name__ == "__main__":
    sys.exit(main())
