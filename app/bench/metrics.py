"""The metric registry: each metric declared once, with its scoring function, labels and column.

A metric judges one answer (a :class:`Judged`) correct or not; its name is also its column in the
``answers`` table; runs aggregate it as accuracy (correct / total). The stored columns, the
report, the CLI choices and the UI labels all come from :data:`METRICS`. Adding a metric is one
decorated function here.

Each metric reads one of the two answer lines of :mod:`app.extraction`: ``gestalt_paper`` and
``exact`` read the paper harness's line (:func:`app.extraction.harness_response`, ``paper_response``),
``letter`` and ``gestalt`` the letters picked from the corrected line (:func:`app.extraction.answer_line`,
``response``).

- ``letter``: IgakuQA's own rule on letters (``prediction.split(",")`` sorted == sorted answer;
  112B30 accepts "a" or "d"; 116A71 counts correct for everyone).
- ``gestalt_paper``: the JMedLLM paper's code (japanese-lm-med-harness ``eval_bench.py``, lines
  313-351), flaws included: the gold is the gold choice texts joined with ","; k and the gold list come from
  splitting that text on ",", so a choice containing a comma breaks it; "." is removed from the
  response; each choice scores the symmetric ``SequenceMatcher`` ratio against the response; the
  k best are picked, ties to the lower index.
- ``gestalt``: the same similarity, with k and the gold set taken from the answer letters.
- ``exact``: the paper's exact match (cleaned response == cleaned joined gold text).

Numeric-entry questions (no choices; not in the paper's sets) are correct under every metric when
the corrected line's digits equal the answer's.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from app.extraction import LETTERS, clean, letter_index, similarity, top_k

ALWAYS_CORRECT = {"116A71"}  # IgakuQA's scorer counts it correct for everyone
# Questions the official answer key accepts either answer to: 112B30 "a or d" (IgakuQA), 119E28
# "a or c" (IgakuQA119's correct_answers.csv writes it "ac")
EITHER_ANSWER = {"112B30": (("a",), ("d",)), "119E28": (("a",), ("c",))}


@dataclass(frozen=True)
class Judged:
    """One answer as the metrics see it: its two answer lines, the letters picked, the question."""

    problem_id: str
    response: str  # the corrected answer line (app.extraction.answer_line)
    paper_response: str  # the paper harness's answer line (app.extraction.harness_response)
    picked: tuple[str, ...]
    choices: Sequence[str]
    answer: Sequence[str]
    similarities: tuple[float, ...]

    @property
    def gold_alternatives(self) -> tuple[tuple[str, ...], ...]:
        return gold_alternatives(self.problem_id, self.answer)

    @property
    def numeric_correct(self) -> bool:
        """For a numeric-entry question: the response's number equals the answer's ("0.4" = "0.40")."""
        if not self.response.strip():
            return False
        given, gold = _numeric(self.response), _numeric("".join(self.answer))
        try:
            return float(given) == float(gold)
        except ValueError:
            return given == gold


@dataclass(frozen=True)
class Metric:
    """A metric: its name (and column), labels, one-line description and scoring function."""

    name: str
    label_en: str
    label_ja: str
    description: str
    score: Callable[[Judged], bool]

    def label(self, language: str) -> str:
        return self.label_ja if language == "ja" else self.label_en

    def aggregate(self, rows: Iterable[dict]) -> dict[str, Any]:
        """Accuracy of this metric over stored answer rows."""
        return tally(rows, self.name)


METRICS: dict[str, Metric] = {}
PRIMARY = "gestalt_paper"  # the number comparable with the paper


def metric(name: str, label_en: str, label_ja: str, description: str) -> Callable[[Callable[[Judged], bool]],
                                                                                  Callable[[Judged], bool]]:
    """Register the decorated function as metric ``name`` (registration order is display order)."""

    def register(score: Callable[[Judged], bool]) -> Callable[[Judged], bool]:
        if name in METRICS:
            raise ValueError(f"metric {name} is declared twice")
        METRICS[name] = Metric(name, label_en, label_ja, description, score)
        return score

    return register


def tally(rows: Iterable[dict], column: str) -> dict[str, Any]:
    """Correct, total and accuracy of a 0/1 ``column`` over the ``rows`` that have a value in it
    (answers stored before a metric was declared have none)."""
    values = [r.get(column) for r in rows]
    correct = sum(int(bool(v)) for v in values if v is not None)
    total = sum(v is not None for v in values)
    return {"correct": correct, "total": total, "accuracy": round(correct / total, 4) if total else None}


def gold_alternatives(problem_id: str, answer: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    return EITHER_ANSWER.get(problem_id, (tuple(answer),))


def _numeric(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if ch.isdigit() or ch in ".-")


def igakuqa_letter_correct(problem_id: str, prediction: str, answer: Sequence[str]) -> bool:
    """IgakuQA's ``evaluate_main.py`` rule, verbatim in effect (no stripping of spaces)."""
    if problem_id in ALWAYS_CORRECT:
        return True
    predicted = sorted(prediction.split(","))
    if problem_id in EITHER_ANSWER:
        return any(predicted == list(gold) for gold in EITHER_ANSWER[problem_id])
    return predicted == sorted(answer)


def _paper_gestalt_once(response: str, choices: Sequence[str], gold: Sequence[str]) -> bool:
    try:
        gold_text = ",".join(choices[letter_index(g)] for g in gold)
    except (ValueError, IndexError):
        return False
    gold_list = gold_text.split(",")
    cleaned = clean(response)
    remaining = list(choices)
    scores = [similarity(c, cleaned) for c in choices]
    selected = []
    try:
        for _ in range(len(gold_list)):
            index = scores.index(max(scores))  # first maximum: ties go to the lower index
            choice = remaining[index]
            remaining.remove(choice)
            scores.pop(index)
            selected.append(choice)
    except ValueError:  # more gold parts than choices: the paper's code errs and counts it wrong
        return False
    return sorted(gold_list) == sorted(selected)


def gestalt_paper_correct(response: str, choices: Sequence[str], answer: Sequence[str],
                          problem_id: str = "") -> bool:
    return any(_paper_gestalt_once(response, choices, gold)
               for gold in gold_alternatives(problem_id, answer))


def exact_correct(response: str, choices: Sequence[str], answer: Sequence[str], problem_id: str = "") -> bool:
    for gold in gold_alternatives(problem_id, answer):
        try:
            gold_text = ",".join(choices[letter_index(g)] for g in gold)
        except (ValueError, IndexError):
            continue
        if clean(gold_text) == clean(response):
            return True
    return False


@metric("letter", "Letter (IgakuQA)", "記号一致（IgakuQA）", "Letter match (IgakuQA's rule)")
def letter(j: Judged) -> bool:
    if not j.choices:
        return j.numeric_correct or j.problem_id in ALWAYS_CORRECT
    return igakuqa_letter_correct(j.problem_id, ",".join(j.picked), j.answer)


@metric("gestalt_paper", "Gestalt (paper)", "Gestalt（論文方式）",
        "Gestalt (paper's code, comparable with the paper)")
def gestalt_paper(j: Judged) -> bool:
    if not j.choices:
        return j.numeric_correct
    return gestalt_paper_correct(j.paper_response, j.choices, j.answer, j.problem_id)


@metric("gestalt", "Gestalt (corrected)", "Gestalt（補正版）", "Gestalt (corrected: k and gold from the letters)")
def gestalt(j: Judged) -> bool:
    if not j.choices:
        return j.numeric_correct
    alternatives = j.gold_alternatives
    picks = {LETTERS[i] for i in top_k(j.similarities, len(alternatives[0]))}
    return any(picks == set(gold) for gold in alternatives)


@metric("exact", "Exact", "完全一致", "Exact match")
def exact(j: Judged) -> bool:
    if not j.choices:
        return j.numeric_correct
    return exact_correct(j.paper_response, j.choices, j.answer, j.problem_id)


def metric_choices() -> list[str]:
    """Metric names for CLI choices, the primary one first."""
    return [PRIMARY, *(name for name in METRICS if name != PRIMARY)]
