r"""Answer text -> the line that is scored: the paper harness's reading and the corrected one, side by side.

Two readings of a response, because the paper's numbers can only be reproduced with the paper's own:

- The paper's (:func:`harness_response`, read by the ``gestalt_paper`` and ``exact`` metrics): the
  rule of japanese-lm-med-harness ``eval_bench.py`` (lines 271-283 of its current version), applied
  to ``full_response`` = prompt + continuation: the text after the FIRST ``### 応答：`` + newline
  (up to the next one), else after the first ``### Answer:``, else after the first ``### Response:``,
  else the whole text; stripped, cut at the first ``\n``, stripped again.
- The corrected one (:func:`answer_line`, read by ``letter`` and ``gestalt`` and by the Ask tab):
  1. drop reasoning blocks, take the text after the LAST response marker of the prompt's template
     if it is in the text, then the first non-empty line;
  2. :func:`pick`: a line of option letters ("c", "(b)", "a, c", "ａ，ｃ") picks those letters;
     otherwise the ``k`` choices most similar to the line (the paper's "Gestalt" similarity, the
     symmetric ``difflib.SequenceMatcher`` ratio, after the paper's cleansing), ties to the lower
     index; a line that matches no choice at least :data:`ABSTAIN_BELOW` picks nothing (abstains).

Reasoning blocks (``<think>...</think>``) are dropped from the continuation before either reading
(the harness predates reasoning models; scoring a model's thoughts would only measure its format).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

LETTERS = string.ascii_lowercase
ABSTAIN_BELOW = 0.3  # a best similarity under this means the answer names no option
_LETTER_LIST = re.compile(r"^\s*[(\[]?[a-z][)\].]?"
                          r"(?:\s*(?:,|、|，|and|と|及び|および|/|&|\s)\s*[(\[]?[a-z][)\].]?)*\s*$")
_THINK_BLOCK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL)
# The harness's markers, in the order it looks for them (not the order they occur in).
HARNESS_MARKERS = ("### 応答：\n", "### Answer:", "### Response:")


@dataclass(frozen=True)
class Pick:
    """What an answer line picked: letters (empty: abstained) and its similarity to each choice."""

    response: str
    letters: tuple[str, ...]
    similarities: tuple[float, ...]
    named_letters: bool  # the line was option letters, not text

    @property
    def abstained(self) -> bool:
        return not self.letters

    @property
    def best_similarity(self) -> float:
        return max(self.similarities, default=0.0)


def similarity(a: str, b: str) -> float:
    """Symmetric Gestalt pattern-matching similarity in [0, 1]."""
    return (SequenceMatcher(None, a, b).ratio() + SequenceMatcher(None, b, a).ratio()) / 2


def clean(text: str) -> str:
    """The paper's cleansing: drop "." and strip."""
    return text.replace(".", "").strip()


def first_line(text: str) -> str:
    """The first non-empty line of a response, stripped."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def split_reasoning(text: str) -> tuple[str, str]:
    """(thinking, answer): the reasoning blocks' text and ``text`` without them.

    A reasoning block is ``<think>...</think>`` (an unclosed one runs to the end), or everything up
    to a lone ``</think>`` whose ``<think>`` was in the prompt. Several blocks are joined by a blank
    line; the thinking is stripped, the answer is left as it is.
    """
    thoughts: list[str] = []
    if "<think>" not in text and "</think>" in text:  # a template that opened <think> in the prompt
        head, _, text = text.partition("</think>")
        thoughts.append(head)
    thoughts += [match.group(1) for match in _THINK_BLOCK.finditer(text)]
    thinking = "\n\n".join(part.strip() for part in thoughts if part.strip())
    return thinking, _THINK_BLOCK.sub("", text)


def strip_reasoning(text: str) -> str:
    """``text`` without its reasoning blocks (see :func:`split_reasoning`)."""
    return split_reasoning(text)[1]


def answer_line(raw: str, marker: str | None = None) -> str:
    """The first non-empty line of the answer: reasoning dropped, after the last ``marker`` if present."""
    text = strip_reasoning(raw)
    if marker and marker in text:
        text = text.split(marker)[-1]
    return first_line(text)


def harness_response(full_response: str) -> str:
    r"""The answer line as the paper's harness reads it (``eval_bench.py`` lines 272-283, ``k = 0``).

    The first of the markers ``### 応答：`` followed by a newline, ``### Answer:`` and ``### Response:``
    that occurs anywhere in ``full_response`` is used, in that order of preference whatever their
    positions; the text read is what follows its FIRST occurrence, up to its second occurrence or
    the end; with none of them, the whole text. That text is stripped (every Unicode space), cut at
    its first ``\n`` (only that character: a ``\r`` stays and is stripped) and stripped again.
    Nothing else: a full-width ``### Answer：`` or a half-width ``### 応答:`` is no marker.
    """
    text = full_response
    for marker in HARNESS_MARKERS:
        if marker in full_response:
            text = full_response.split(marker)[1]
            break
    return text.strip().split("\n")[0].strip()


def harness_response_final(full_response: str) -> bool:
    r"""Whether text appended to ``full_response`` leaves :func:`harness_response` as it is.

    True once the marker in use is ``### 応答：`` + newline or ``### Answer:`` and either it occurs a
    second time (what is read is closed) or what follows it holds a ``\n`` after something not
    blank (the first line is complete). Appended text cannot move that line: a later occurrence of
    the marker starts after the last ``\n`` (the markers hold no ``\n`` before their end), so it
    cuts the text after the line. With ``### 応答：`` nothing outranks the marker, so this is exact.
    With ``### Answer:`` it assumes the Japanese marker does not follow (it would outrank it): the one
    case where stopping here reads differently from generating on. ``### Response:`` or no marker is
    never final: a ``### Answer:`` may still come.
    """
    for marker in HARNESS_MARKERS[:2]:
        if marker in full_response:
            parts = full_response.split(marker, 2)
            return len(parts) == 3 or "\n" in parts[1].lstrip()
    return False


def letter_index(letter: str) -> int:
    return LETTERS.index(letter)


def parse_letters(response: str, n_choices: int) -> tuple[str, ...] | None:
    """Letters when the response is only option letters ("c", "(b)", "a, c", "ａ，ｃ"), else None."""
    text = unicodedata.normalize("NFKC", response).strip().lower().rstrip(".")
    if not text or not _LETTER_LIST.match(text):
        return None
    letters = sorted({ch for ch in re.sub(r"and", " ", text) if "a" <= ch <= "z"})
    if not letters or any(letter_index(ch) >= n_choices for ch in letters):
        return None
    return tuple(letters)


def top_k(scores: Sequence[float], k: int) -> tuple[int, ...]:
    """Indexes of the k highest scores, ties to the lower index, sorted."""
    return tuple(sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]))


def choice_similarities(response: str, choices: Sequence[str]) -> tuple[float, ...]:
    """The cleaned ``response``'s similarity to each choice."""
    cleaned = clean(response)
    return tuple(similarity(c, cleaned) for c in choices)


def pick(response: str, choices: Sequence[str], k: int = 1) -> Pick:
    """The options the answer line ``response`` names: its letters, else the ``k`` most similar."""
    similarities = choice_similarities(response, choices)
    letters = parse_letters(response, len(choices))
    if letters is not None:
        return Pick(response, letters, similarities, True)
    if not clean(response) or max(similarities, default=0.0) < ABSTAIN_BELOW:
        return Pick(response, (), similarities, False)
    return Pick(response, tuple(LETTERS[i] for i in top_k(similarities, k)), similarities, False)
