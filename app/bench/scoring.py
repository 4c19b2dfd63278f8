"""The benchmark's metrics, as pure functions of a response, the choices and the gold answer.

- ``gestalt_paper``: the JMedLLM paper's code (japanese-lm-med-harness ``eval_bench.py``),
  flaws included: the gold is the gold choice texts joined with ","; k and the gold list come from
  splitting that text on ",", so a choice containing a comma breaks it; "." is removed from the
  response (and, for exact match, from the gold); each choice scores the symmetric
  ``SequenceMatcher`` ratio against the response; the k best are picked, ties to the lower index.
- ``gestalt``: the same similarity, with k and the gold set taken from the answer letters.
- ``exact``: the paper's exact match (cleaned response == cleaned joined gold text).
- ``letter``: IgakuQA's own rule on letters (``prediction.split(",")`` sorted == sorted answer;
  112B30 accepts "a" or "d"; 116A71 counts correct for everyone).

The response is the first non-empty line after the response marker: the prompt ends with the
marker and a newline, so for generated text it is the first non-empty line of the generation
(``app.matching.first_line``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from app.matching import ABSTAIN_BELOW, LETTERS, first_line, similarity

METRICS = ("letter", "gestalt_paper", "gestalt", "exact")
ALWAYS_CORRECT = {"116A71"}  # IgakuQA's scorer counts it correct for everyone
EITHER_ANSWER = {"112B30": (("a",), ("d",))}  # "a or d"
_LETTER_LIST = re.compile(r"^\s*[(\[]?[a-z][)\].]?(?:\s*(?:,|、|，|and|と|及び|および|/|&|\s)\s*[(\[]?[a-z][)\].]?)*\s*$")


@dataclass(frozen=True)
class Scored:
    """Every metric's verdict for one response, and what it picked."""

    response: str
    picked: tuple[str, ...]
    letter: bool
    gestalt_paper: bool
    gestalt: bool
    exact: bool
    abstained: bool
    best_similarity: float
    similarities: tuple[float, ...]
    kinki_picked: tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def extract_response(raw: str, marker: str | None = None) -> str:
    """The first non-empty line after the last response ``marker`` (or of ``raw`` if absent)."""
    if marker and marker in raw:
        raw = raw.split(marker)[-1]
    return first_line(raw)


def clean(text: str) -> str:
    """The paper's cleansing: drop "." and strip."""
    return text.replace(".", "").strip()


def gold_alternatives(problem_id: str, answer: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    return EITHER_ANSWER.get(problem_id, (tuple(answer),))


def letter_index(letter: str) -> int:
    return LETTERS.index(letter)


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


def top_k(scores: Sequence[float], k: int) -> tuple[int, ...]:
    """Indexes of the k highest scores, ties to the lower index."""
    return tuple(sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]))


def exact_correct(response: str, choices: Sequence[str], answer: Sequence[str], problem_id: str = "") -> bool:
    for gold in gold_alternatives(problem_id, answer):
        try:
            gold_text = ",".join(choices[letter_index(g)] for g in gold)
        except (ValueError, IndexError):
            continue
        if clean(gold_text) == clean(response):
            return True
    return False


def igakuqa_letter_correct(problem_id: str, prediction: str, answer: Sequence[str]) -> bool:
    """IgakuQA's ``evaluate_main.py`` rule, verbatim in effect (no stripping of spaces)."""
    if problem_id in ALWAYS_CORRECT:
        return True
    predicted = sorted(prediction.split(","))
    if problem_id in EITHER_ANSWER:
        return any(predicted == list(gold) for gold in EITHER_ANSWER[problem_id])
    return predicted == sorted(answer)


def parse_letters(response: str, n_choices: int) -> tuple[str, ...] | None:
    """Letters when the response is only option letters ("c", "(b)", "a, c", "ａ，ｃ"), else None."""
    text = unicodedata.normalize("NFKC", response).strip().lower().rstrip(".")
    if not text or not _LETTER_LIST.match(text):
        return None
    letters = sorted({ch for ch in re.sub(r"and", " ", text) if "a" <= ch <= "z"})
    if not letters or any(letter_index(ch) >= n_choices for ch in letters):
        return None
    return tuple(letters)


def _numeric(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if ch.isdigit() or ch in ".-")


def score_response(problem_id: str, response: str, choices: Sequence[str], answer: Sequence[str],
                   kinki: Sequence[str] = ()) -> Scored:
    """All metrics for ``response`` (already the first line) to one question."""
    if not choices:  # numeric entry: the digits must equal the answer
        ok = bool(response.strip()) and _numeric(response) == _numeric("".join(answer))
        return Scored(response, (), ok or problem_id in ALWAYS_CORRECT, ok, ok, ok,
                      not response.strip(), 0.0, (), ())
    cleaned = clean(response)
    scores = tuple(similarity(c, cleaned) for c in choices)
    best = max(scores)
    abstained = not cleaned or best < ABSTAIN_BELOW
    alternatives = gold_alternatives(problem_id, answer)
    k = len(alternatives[0])
    letters = parse_letters(response, len(choices))
    gestalt_picks = tuple(LETTERS[i] for i in top_k(scores, k))
    gestalt = any(set(gestalt_picks) == set(gold) for gold in alternatives)
    if letters is not None:
        picked = letters
    elif abstained:
        picked = ()
    else:
        picked = gestalt_picks
    return Scored(
        response=response, picked=picked,
        letter=igakuqa_letter_correct(problem_id, ",".join(picked), answer),
        gestalt_paper=gestalt_paper_correct(response, choices, answer, problem_id),
        gestalt=gestalt, exact=exact_correct(response, choices, answer, problem_id),
        abstained=abstained and letters is None, best_similarity=best, similarities=scores,
        kinki_picked=tuple(sorted(set(picked) & set(kinki))),
    )


def score_letters(problem_id: str, letters: Sequence[str], choices: Sequence[str], answer: Sequence[str],
                  kinki: Sequence[str] = ()) -> Scored:
    """All metrics for a choice picked by letters (the log-likelihood mode): the response is the
    picked choice texts joined with ",", as the paper's gold is."""
    response = ",".join(choices[letter_index(x)] for x in letters)
    scored = score_response(problem_id, response, choices, answer, kinki)
    picked = tuple(sorted(letters))
    return Scored(response, picked, igakuqa_letter_correct(problem_id, ",".join(picked), answer),
                  scored.gestalt_paper, scored.gestalt, scored.exact, False, scored.best_similarity,
                  scored.similarities, tuple(sorted(set(picked) & set(kinki))))


def empty_answer_floor(problem_id: str, choices: Sequence[str], answer: Sequence[str]) -> bool:
    """Whether an empty response scores correct under ``gestalt_paper`` (its chance floor)."""
    return bool(choices) and gestalt_paper_correct("", choices, answer, problem_id)
