"""Answer text -> picked option letters: the one extraction step the Ask tab and the benchmark share.

1. :func:`answer_line`: drop reasoning blocks (``<think>...</think>``), take the text after the
   last response marker if the prompt's marker is in it, then the first non-empty line.
2. :func:`pick`: a line of option letters ("c", "(b)", "a, c", "ａ，ｃ") picks those letters;
   otherwise the ``k`` choices most similar to the line (the paper's "Gestalt" similarity, the
   symmetric ``difflib.SequenceMatcher`` ratio, after the paper's cleansing), ties to the lower
   index; a line that matches no choice at least :data:`ABSTAIN_BELOW` picks nothing (abstains).
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
