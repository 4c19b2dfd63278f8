"""Switching every registered component's text between Japanese and English."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui.i18n import LANGUAGE_CHOICES, THINKING_CHOICES, t

LANGUAGE_OPTIONS = "language-options"  # pseudo-key: the answer-language radio's choices
THINKING_OPTIONS = "thinking-options"  # pseudo-key: the thinking switch's choices
_CHOICE_SETS = {LANGUAGE_OPTIONS: LANGUAGE_CHOICES, THINKING_OPTIONS: THINKING_CHOICES}


class Labeler:
    """Components whose label, value, placeholder or choices follow the UI language."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Any, dict[str, str]]] = {}

    def add(self, component: Any, key: str, attr: str = "label") -> Any:
        """Register ``component``'s ``attr`` to show text ``key`` (choices: LANGUAGE_OPTIONS or THINKING_OPTIONS)."""
        self._entries.setdefault(id(component), (component, {}))[1][attr] = key
        return component

    @property
    def components(self) -> list[Any]:
        return [component for component, _ in self._entries.values()]

    def updates(self, lang: str) -> list[Any]:
        """One ``gr.update`` per registered component, in registration order."""
        result = []
        for _, attrs in self._entries.values():
            values: dict[str, Any] = {
                attr: _CHOICE_SETS[key][lang] if key in _CHOICE_SETS else t(key, lang)
                for attr, key in attrs.items()
            }
            result.append(gr.update(**values))
        return result
