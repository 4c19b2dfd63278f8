"""Language detection for questions: kana or kanji means Japanese."""

from __future__ import annotations

import re

from app.prompts import Language

_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")


def detect_language(text: str) -> Language:
    """``"ja"`` when the text holds any hiragana, katakana or kanji, else ``"en"``."""
    return "ja" if _JAPANESE.search(text) else "en"


def resolve_language(text: str, override: str | None) -> Language:
    """The user's explicit choice ("ja"/"en") wins; "auto" or ``None`` detects from the text."""
    if override in ("ja", "en"):
        return override  # type: ignore[return-value]
    if override not in (None, "", "auto"):
        raise ValueError(f"Language must be 'ja', 'en' or 'auto', not {override!r}")
    return detect_language(text)
