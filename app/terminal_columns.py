"""Text cut and padded to a width in terminal columns, where a Japanese character takes two."""

from __future__ import annotations

import unicodedata


def columns(text: str) -> int:
    """How many terminal columns ``text`` takes (wide and full-width characters count two)."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def fit(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` columns, then padded with spaces to exactly ``width``."""
    kept, used = [], 0
    for char in text:
        size = columns(char)
        if used + size > width:
            break
        kept.append(char)
        used += size
    return "".join(kept) + " " * (width - used)
