"""Prompt templates as data: the JMedLLM paper's evaluation templates and the system prompts.

The templates live verbatim in ``app/assets/prompts/paper_templates.json`` with their attribution;
this module only loads and fills them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from app.errors import UserError
from app.paths import ASSETS_DIR

Language = Literal["ja", "en"]
PROMPTS_DIR = ASSETS_DIR / "prompts"
CHOICE_SEPARATOR = ","  # the paper's harness joins choices with "," and no space
SHOT_COUNTS = (0, 1, 3)


class TemplateError(UserError, ValueError):
    """Unknown template name or an unsupported number of examples."""


@dataclass(frozen=True)
class PaperTemplate:
    """One of the paper's templates, with the markers that frame its input and response."""

    name: str
    language: Language
    n_choices: int | None
    few_shot: bool
    input_marker: str
    response_marker: str
    text: str


@functools.cache
def _paper_file() -> dict:
    return json.loads((PROMPTS_DIR / "paper_templates.json").read_text(encoding="utf-8"))


@functools.cache
def paper_templates() -> dict[str, PaperTemplate]:
    """All templates by name."""
    return {
        name: PaperTemplate(name=name, **fields) for name, fields in _paper_file()["templates"].items()
    }


def attribution() -> str:
    return _paper_file()["attribution"]


def few_shot_examples(language: Language) -> list[dict[str, str]]:
    return _paper_file()["few_shot_examples"][language]


@functools.cache
def system_prompt(language: Language) -> str:
    """The short clinical system prompt for free questions."""
    return json.loads((PROMPTS_DIR / "system_prompts.json").read_text(encoding="utf-8"))[language]


def get_template(name: str) -> PaperTemplate:
    try:
        return paper_templates()[name]
    except KeyError:
        known = ", ".join(sorted(paper_templates()))
        raise TemplateError(f"Unknown template {name!r}. Known templates: {known}") from None


def default_template(language: Language, n_choices: int) -> PaperTemplate:
    """The paper's MedPaLM-style CoT template for ``language``, four- or five-choice wording."""
    count = "four" if n_choices == 4 else "five"
    suffix = "_ja" if language == "ja" else ""
    return get_template(f"medpalm_{count}_choice_cot{suffix}")


def join_choices(choices: Sequence[str]) -> str:
    return CHOICE_SEPARATOR.join(choices)


def render(template: PaperTemplate, question: str, choices: Sequence[str], shots: int = 0) -> str:
    """Fill ``template`` with a question and its choices, inserting ``shots`` worked examples."""
    if shots not in SHOT_COUNTS:
        raise TemplateError(f"shots must be one of {SHOT_COUNTS}, not {shots}")
    if shots and not template.few_shot:
        raise TemplateError(f"Template {template.name} is zero-shot only")
    body = template.text.replace("{{instruction}}", question).replace("{{input}}", join_choices(choices))
    if not shots:
        return body
    head, marker, tail = body.partition(template.input_marker)
    examples = "".join(
        f"{template.input_marker}\n{ex['question']}\n{ex['choices']}\n"
        f"{template.response_marker}\n{ex['answer']}\n"
        for ex in few_shot_examples(template.language)[:shots]
    )
    return head + examples + marker + tail
