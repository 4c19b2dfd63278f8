"""Scoring one answer with every registered metric.

A generated answer comes as two lines (:mod:`app.extraction`): the corrected answer line
(:func:`app.extraction.answer_line`), from which :func:`app.extraction.pick` picks the letters, and
the paper harness's line (:func:`app.extraction.harness_response`), which ``gestalt_paper`` and
``exact`` read. The log-likelihood mode picks letters directly and is judged on the picked choice
texts joined with ",", as the paper's gold is (both lines are that text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from app.bench.metrics import METRICS, Judged, gestalt_paper_correct, gold_alternatives
from app.extraction import choice_similarities, letter_index, pick


@dataclass(frozen=True)
class Scored:
    """Every metric's verdict for one answer (``scored.<metric>`` too), its two lines, and what it picked."""

    response: str
    paper_response: str
    picked: tuple[str, ...]
    verdicts: dict[str, bool]
    abstained: bool
    best_similarity: float
    similarities: tuple[float, ...]
    kinki_picked: tuple[str, ...]

    def __getattr__(self, name: str) -> bool:
        verdicts = self.__dict__.get("verdicts", {})
        if name in verdicts:
            return verdicts[name]
        raise AttributeError(name)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(judged: Judged, kinki: Sequence[str], abstained: bool) -> Scored:
    """Apply every metric in :data:`METRICS` to ``judged``."""
    return Scored(
        response=judged.response, paper_response=judged.paper_response, picked=judged.picked,
        verdicts={name: m.score(judged) for name, m in METRICS.items()},
        abstained=abstained, best_similarity=max(judged.similarities, default=0.0),
        similarities=judged.similarities, kinki_picked=tuple(sorted(set(judged.picked) & set(kinki))),
    )


def score_response(problem_id: str, response: str, choices: Sequence[str], answer: Sequence[str],
                   kinki: Sequence[str] = (), paper_response: str | None = None) -> Scored:
    """All metrics for one question's answer: ``response`` is the corrected answer line,
    ``paper_response`` the harness's (None: the same line, for an answer that has only one)."""
    paper = response if paper_response is None else paper_response
    if not choices:  # numeric entry
        judged = Judged(problem_id, response, paper, (), choices, answer, ())
        return judge(judged, kinki, abstained=not response.strip())
    chosen = pick(response, choices, k=len(gold_alternatives(problem_id, answer)[0]))
    judged = Judged(problem_id, response, paper, chosen.letters, choices, answer, chosen.similarities)
    return judge(judged, kinki, abstained=chosen.abstained)


def score_letters(problem_id: str, letters: Sequence[str], choices: Sequence[str], answer: Sequence[str],
                  kinki: Sequence[str] = ()) -> Scored:
    """All metrics for options picked by letters (the log-likelihood mode)."""
    response = ",".join(choices[letter_index(x)] for x in letters)
    judged = Judged(problem_id, response, response, tuple(sorted(letters)), choices, answer,
                    choice_similarities(response, choices))
    return judge(judged, kinki, abstained=False)


def empty_answer_floor(problem_id: str, choices: Sequence[str], answer: Sequence[str]) -> bool:
    """Whether an empty response scores correct under ``gestalt_paper`` (its chance floor)."""
    return bool(choices) and gestalt_paper_correct("", choices, answer, problem_id)
