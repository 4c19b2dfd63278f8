"""Baselines beside the model, on the same questions and scored by the same code.

- IgakuQA's published predictions (``baseline_results/YEAR/NNN-X_{name}.jsonl``): GPT-4, ChatGPT,
  GPT-3, the student majority, and ChatGPT on the English translation. Letter predictions, so
  they are scored with the letter metric (IgakuQA's rule).
- The JMedLLM paper's reported Gestalt accuracies on IgakuQA (Sukeda 2024, arXiv:2409.11783,
  Table; copied from the protocol notes), shown as reference numbers: the paper's set, not
  necessarily the same questions as a filtered run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from app.bench.data import DataError, Dataset, decode_utf8_text, parse_jsonl
from app.bench.metrics import igakuqa_letter_correct

BASELINE_FILES = {
    "gpt4": "GPT-4",
    "chatgpt": "ChatGPT",
    "gpt3": "GPT-3",
    "student-majority": "Student majority",
    "translate_chatgpt-en": "ChatGPT (English translation)",
}
ENGLISH_BASELINES = frozenset({"translate_chatgpt-en"})  # the others answered the Japanese questions

# Gestalt accuracy (%) on IgakuQA as reported in the JMedLLM-v1 paper: (ja, en).
PAPER_REPORTED: dict[str, tuple[float | None, float | None]] = {
    "JMedLLM-v1-7B": (52.3, 50.6),
    "Qwen2-7B-Instruct": (44.6, 46.4),
    "Preferred-Llama3-MedSwallow-70B": (62.6, 55.0),
    "OpenBioLLM-70B": (35.6, 58.5),
    "GPT-4 (3-shot, Kasai et al.)": (78.2, None),
}


def read_predictions(path: Path) -> list[dict]:
    """The rows of a predictions JSONL file (IgakuQA's format), each with its line as ``_line``.

    A leading byte-order mark (Notepad, Excel) is ignored; invalid UTF-8, a file without predictions
    and a problem_id given twice are :class:`DataError`.
    """
    rows = parse_jsonl(decode_utf8_text(path.read_bytes(), str(path)), str(path))
    if not rows:
        raise DataError(f"no predictions in {path}")
    first_line: dict[str, int] = {}
    for row in rows:
        earlier = first_line.setdefault(row["problem_id"], row["_line"])
        if earlier != row["_line"]:
            raise DataError(f"{path}: problem_id {row['problem_id']!r} appears twice, on lines {earlier} "
                            f"and {row['_line']}")
    return rows


def baseline_predictions(dataset: Dataset, name: str) -> dict[str, str]:
    """problem_id -> prediction for one published baseline, over every block file present."""
    folder = dataset.root / "baseline_results"
    predictions: dict[str, str] = {}
    for path in sorted(folder.glob(f"*/*_{name}.jsonl")):
        if name == "chatgpt" and path.name.endswith("translate_chatgpt-en.jsonl"):
            continue
        for row in read_predictions(path):
            predictions[row["problem_id"]] = str(row.get("prediction", ""))
    return predictions


def score_baseline(dataset: Dataset, name: str, problem_ids: Iterable[str]) -> dict:
    """Letter accuracy of baseline ``name`` on ``problem_ids`` (missing predictions count wrong)."""
    predictions = baseline_predictions(dataset, name)
    by_id = dataset.by_id()
    ids = [p for p in problem_ids if p in by_id]
    correct = sum(igakuqa_letter_correct(p, predictions.get(p, ""), by_id[p].answer) for p in ids)
    return {"name": BASELINE_FILES.get(name, name), "key": name,
            "language": "en" if name in ENGLISH_BASELINES else "ja", "metric": "letter", "correct": correct,
            "total": len(ids), "accuracy": round(correct / len(ids), 4) if ids else None,
            "available": bool(predictions)}


def baselines_for(dataset: Dataset, problem_ids: Iterable[str]) -> list[dict]:
    ids = list(dict.fromkeys(problem_ids))
    return [score_baseline(dataset, name, ids) for name in BASELINE_FILES]


def baseline_breakdown(dataset: Dataset, name: str, problem_ids: Iterable[str], key: str) -> dict:
    """Accuracy of a baseline per ``key`` ("exam" or "category") over ``problem_ids`` (none without its files)."""
    predictions = baseline_predictions(dataset, name)
    if not predictions:
        return {}
    by_id = dataset.by_id()
    groups: dict = {}
    for p in dict.fromkeys(problem_ids):
        q = by_id.get(p)
        if q is None:
            continue
        g = groups.setdefault(getattr(q, key), [0, 0])
        g[0] += igakuqa_letter_correct(p, predictions.get(p, ""), q.answer)
        g[1] += 1
    return {k: round(c / t, 4) for k, (c, t) in groups.items() if t}


def paper_reported() -> list[dict]:
    return [{"model": m, "igakuqa_ja": ja, "igakuqa_en": en, "metric": "gestalt (paper's report)"}
            for m, (ja, en) in PAPER_REPORTED.items()]
