"""Question sets: which questions of a :class:`Dataset` a run asks.

- ``paper``: text-only questions with the data's paper choice count (IgakuQA: exactly five, 1,455
  questions, the JMedLLM paper's set; the four-choice benchmarks: four; a hospital's set: every
  question with choices).
- ``paper-strict``: ``paper`` minus questions longer than the paper's code allowed (1,024
  Japanese / 2,048 English characters), so it differs slightly by language.
- ``text-only``: every question that needs no image.
- ``full``: all 2,000 (image questions are asked without their image), for the pass/fail estimate.
- ``quick``: a stratified sample of ``size`` ``paper`` questions (fixed seed), one per year/block
  stratum in turn, for a one-to-two-minute check.

A year ("2022" or "116") and a block ("B", "BE") filter any set. A question is asked only in the
languages it has.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from app.bench.data import EXAMS, YEARS, Dataset, Question
from app.errors import UserError

SET_NAMES = ("paper", "paper-strict", "text-only", "full", "quick")
QUICK_SIZE = 20
QUICK_SEED = 20240917
PAPER_MAX_CHARS = {"ja": 1024, "en": 2048}


class SetError(UserError, ValueError):
    """An unknown set name or a filter that selects nothing."""


@dataclass(frozen=True)
class SetSpec:
    name: str = "paper"
    year: int | None = None  # exam number (112-116)
    blocks: str | None = None
    quick_size: int = QUICK_SIZE
    seed: int = QUICK_SEED

    def label(self) -> str:
        parts = [self.name if self.name != "quick" else f"quick{self.quick_size}"]
        if self.year:
            parts.append(str(self.year))
        if self.blocks:
            parts.append(self.blocks)
        return "/".join(parts)


EXAM_YEAR_OFFSET = 1906  # the Nth national exam was held in year N + 1906 (112 -> 2018, 119 -> 2025)


def parse_year(value: str | int | None) -> int | None:
    """"2022" or "116" -> 116 (any national exam, 100-199, or its year)."""
    if value in (None, "", "all"):
        return None
    try:
        number = int(value)
    except ValueError:
        raise SetError(f"Unknown year {value}: use a year such as 2022 or the exam number such as 116") from None
    if number in EXAMS or 100 <= number <= 199:
        return number
    if number in YEARS or 2006 <= number <= 2105:
        return YEARS.get(number, number - EXAM_YEAR_OFFSET)
    raise SetError(f"Unknown year {value}: use a year such as 2022 or the exam number such as 116")


def is_paper(q: Question, paper_choices: int | None = 5) -> bool:
    """In the paper's set: text-only, with ``paper_choices`` choices (None: any number, at least 2)."""
    return q.text_only and (q.n_choices == paper_choices if paper_choices else q.n_choices >= 2)


def select(dataset: Dataset, spec: SetSpec, language: str = "ja") -> list[Question]:
    """The questions of ``spec``, in data order (quick: in stratified sample order)."""
    if spec.name not in SET_NAMES:
        raise SetError(f"Unknown question set {spec.name!r}; choose one of {', '.join(SET_NAMES)}")
    pool = [q for q in dataset.questions
            if language in q.languages
            and (spec.year is None or q.exam == spec.year)
            and (not spec.blocks or q.block in spec.blocks.upper())]
    paper = dataset.paper_choices
    if spec.name in ("paper", "quick"):
        pool = [q for q in pool if is_paper(q, paper)]
    elif spec.name == "paper-strict":
        pool = [q for q in pool if is_paper(q, paper) and len(q.text(language)) <= PAPER_MAX_CHARS[language]]
    elif spec.name == "text-only":
        pool = [q for q in pool if q.text_only]
    if spec.name == "quick":
        pool = stratified_sample(pool, spec.quick_size, spec.seed)
    if not pool:
        raise SetError(f"The question set {spec.label()} of {dataset.label} has no questions in {language}")
    return pool


def stratified_sample(pool: Sequence[Question], size: int, seed: int) -> list[Question]:
    """``size`` questions taking one from each (year, block) stratum in turn, shuffled by ``seed``."""
    rng = random.Random(seed)
    strata: dict[tuple[int, str], list[Question]] = defaultdict(list)
    for q in pool:
        strata[(q.exam, q.block)].append(q)
    for key in sorted(strata):
        rng.shuffle(strata[key])
    keys = sorted(strata)
    rng.shuffle(keys)
    picked: list[Question] = []
    while len(picked) < min(size, len(pool)):
        for key in keys:
            if strata[key] and len(picked) < size:
                picked.append(strata[key].pop())
    return picked
