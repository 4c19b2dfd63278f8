"""Matching a model's free-text answer to the options of a multiple-choice question.

"Gestalt" similarity is the symmetric ``difflib.SequenceMatcher`` ratio the JMedLLM paper uses.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

LETTERS = string.ascii_lowercase
ABSTAIN_BELOW = 0.3  # a best similarity under this means the answer names no option
_LETTER_ANSWER = re.compile(r"^\s*[(（]?([a-zａ-ｚ])[)）.．]?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ChoicePick:
    """The option an answer names: index, letter, text and how similar the answer was to it."""

    index: int
    letter: str
    text: str
    score: float


def similarity(a: str, b: str) -> float:
    """Symmetric Gestalt pattern-matching similarity in [0, 1]."""
    return (SequenceMatcher(None, a, b).ratio() + SequenceMatcher(None, b, a).ratio()) / 2


def first_line(text: str) -> str:
    """The first non-empty line of a response, stripped."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def letter_of(index: int) -> str:
    return LETTERS[index]


def pick_choice(response: str, choices: Sequence[str]) -> ChoicePick | None:
    """The option named by the first line of ``response``, or ``None`` when it names none.

    A bare letter ("b", "(b)", "ｂ．") selects that option; otherwise the most similar option wins
    (ties to the lower index) when its similarity reaches :data:`ABSTAIN_BELOW`.
    """
    line = first_line(response)
    if not line or not choices:
        return None
    letter_match = _LETTER_ANSWER.match(line)
    if letter_match:
        letter = letter_match.group(1).lower()
        letter = chr(ord(letter) - ord("ａ") + ord("a")) if "ａ" <= letter <= "ｚ" else letter
        index = LETTERS.index(letter)
        if index < len(choices):
            return ChoicePick(index, letter, choices[index], 1.0)
    scores = [similarity(choice.strip(), line) for choice in choices]
    best = max(range(len(choices)), key=lambda i: (scores[i], -i))
    if scores[best] < ABSTAIN_BELOW:
        return None
    return ChoicePick(best, letter_of(best), choices[best], scores[best])
