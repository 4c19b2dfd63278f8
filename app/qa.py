"""Asking the model: a free clinical question (chat) or a multiple-choice question (paper template).

This is the one place that turns what a user typed into a generation, shared by CLI and UI.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from app.engines.base import Engine, Generation, Sampling
from app.errors import UserError
from app.extraction import LETTERS, Pick, answer_line, pick
from app.language import resolve_language
from app.prompts import Language, default_template, get_template, render, system_prompt

MAX_QUESTION_CHARS = 20_000
MAX_CHOICES = 8
MAX_CHOICE_CHARS = 1_000
DEFAULT_MAX_TOKENS = 512
CHAT_REPEAT_PENALTY = 1.05  # free answers: greedy but not stuck in loops (Qwen's own default)


class QuestionError(UserError, ValueError):
    """The question cannot be asked as written; the message says what to fix."""


@dataclass(frozen=True)
class Query:
    """What the user asked: text, optional choices, language ("auto", "ja", "en"), template."""

    text: str
    choices: tuple[str, ...] = ()
    language: str = "auto"
    template: str | None = None
    shots: int = 0
    max_tokens: int = DEFAULT_MAX_TOKENS

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.choices)


@dataclass
class Answer:
    """A generation in progress plus what is needed to read its result."""

    generation: Generation
    language: Language
    choices: tuple[str, ...]
    template: str | None
    prompt: str

    @property
    def pick(self) -> Pick | None:
        """The options the answer names (multiple-choice questions only), read as the benchmark reads them."""
        return pick(answer_line(self.generation.text), self.choices) if self.choices else None

    def chosen_text(self) -> str:
        """ "(b) text" for each picked option; empty when the answer names none or is free text."""
        chosen = self.pick
        if chosen is None:
            return ""
        return ", ".join(f"({letter}) {self.choices[LETTERS.index(letter)]}" for letter in chosen.letters)


def parse_choices(raw: str | Sequence[str] | None) -> tuple[str, ...]:
    """Choices from a list, or from text with one choice per line (blank lines ignored)."""
    if raw is None:
        return ()
    items = raw.splitlines() if isinstance(raw, str) else list(raw)
    return tuple(item.strip() for item in items if item and item.strip())


def validate(question: Query) -> None:
    """Raise :class:`QuestionError` for empty, oversized or malformed questions."""
    text = question.text.strip()
    if not text:
        raise QuestionError("The question is empty. / 質問が空です。")
    if not all(is_unicode(s) for s in (text, *question.choices)):
        raise QuestionError("The question or a choice holds bytes that are not valid UTF-8; retype it or save it "
                            "as UTF-8. / 質問または選択肢に UTF-8 として不正な文字があります。")
    if len(text) > MAX_QUESTION_CHARS:
        raise QuestionError(
            f"The question is {len(text):,} characters; the limit is {MAX_QUESTION_CHARS:,}. "
            f"/ 質問が長すぎます（上限 {MAX_QUESTION_CHARS:,} 文字）。"
        )
    if question.choices:
        if len(question.choices) < 2:
            raise QuestionError("A multiple-choice question needs at least two choices. / 選択肢は2つ以上必要です。")
        if len(question.choices) > MAX_CHOICES:
            raise QuestionError(f"At most {MAX_CHOICES} choices are supported. / 選択肢は{MAX_CHOICES}個までです。")
        if any(len(c) > MAX_CHOICE_CHARS for c in question.choices):
            raise QuestionError(f"A choice is longer than {MAX_CHOICE_CHARS} characters. / 選択肢が長すぎます。")
    if question.max_tokens < 1:
        raise QuestionError("max_tokens must be at least 1.")


def is_unicode(text: str) -> bool:
    """False for text with lone surrogates (how Python decodes invalid UTF-8 from the command line, and
    what JSON's escapes can carry): the tokenizer cannot take them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def ask(engine: Engine, question: Query, cancel: threading.Event | None = None) -> Answer:
    """Validate ``question`` and start answering it; iterate ``answer.generation`` for the text."""
    validate(question)
    language = resolve_language(question.text, question.language)
    if question.is_multiple_choice:
        template = (
            get_template(question.template)
            if question.template
            else default_template(language, len(question.choices))
        )
        prompt = render(template, question.text.strip(), question.choices, question.shots)
        generation = engine.stream(prompt, Sampling.greedy(max_tokens=question.max_tokens), cancel)
        return Answer(generation, language, question.choices, template.name, prompt)
    messages = [
        {"role": "system", "content": system_prompt(language)},
        {"role": "user", "content": question.text.strip()},
    ]
    sampling = Sampling(max_tokens=question.max_tokens, repeat_penalty=CHAT_REPEAT_PENALTY)
    generation = engine.stream_chat(messages, sampling, cancel)
    return Answer(generation, language, (), None, generation.prompt)
