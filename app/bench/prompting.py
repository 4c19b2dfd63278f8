"""Prompts from the paper's templates, and generation that stops once the first line is complete.

The paper reads only the first line of the response, so under greedy decoding stopping when that
line is complete gives the same answer as generating 256 tokens and cutting, at a fraction of the
cost. A response that starts with blank lines keeps going until a non-empty line is complete
(documented choice: "first line" means first non-empty line after the response marker).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from app.bench.data import Question
from app.engines.base import Engine, Sampling
from app.extraction import strip_reasoning
from app.prompts import PaperTemplate, TemplateError, default_template, get_template, paper_templates, render

PAPER_MAX_TOKENS = 256


def resolve_template(name: str | None, language: str, n_choices: int) -> PaperTemplate:
    """``name`` for ``language``: "medpalm" / "alpaca" families or a full name; None: the paper's."""
    if not name or name in ("default", "medpalm", "paper"):
        return default_template(language, 4 if n_choices == 4 else 5)  # type: ignore[arg-type]
    base = name.removesuffix("_ja")
    if base == "alpaca":
        return get_template("alpaca_ja" if language == "ja" else "alpaca")
    candidate = f"{base}_ja" if language == "ja" else base
    if candidate in paper_templates():
        return get_template(candidate)
    template = get_template(name)
    if template.language != language:
        raise TemplateError(f"Template {name} is for {template.language}, not {language}")
    return template


def template_family(name: str | None) -> str:
    """The template setting as stored with a run ("medpalm_cot" for the paper's default)."""
    if not name or name in ("default", "medpalm", "paper"):
        return "medpalm_cot"
    return name.removesuffix("_ja")


def build_prompt(question: Question, language: str, template: str | None = None,
                 shots: int = 0) -> tuple[str, PaperTemplate]:
    tpl = resolve_template(template, language, question.n_choices)
    return render(tpl, question.text(language), question.choices(language), shots), tpl


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


@dataclass
class Generated:
    raw: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str


def first_line_complete(text: str) -> bool:
    """Whether ``text`` holds a complete non-empty answer line (reasoning blocks do not count)."""
    stripped = strip_reasoning(text).lstrip("\r\n \t\u3000")
    return "\n" in stripped and bool(stripped.split("\n", 1)[0].strip())


def generate(engine: Engine, prompt: str, first_line_only: bool = True, max_tokens: int = PAPER_MAX_TOKENS,
             cancel: threading.Event | None = None, conversation: str | None = None) -> Generated:
    """Greedy generation; with ``first_line_only`` it stops as soon as the first line is complete.

    ``conversation``: a key under which the engine keeps the evaluated prompt, so the next prompt
    with the same key evaluates only what differs (a run's shared template prefix).
    """
    generation = engine.stream(prompt, Sampling.greedy(max_tokens=max_tokens), cancel=cancel, wait=True,
                               conversation=conversation)
    stopped = False
    try:
        for _ in generation:
            if first_line_only and first_line_complete(generation.text):
                stopped = True
                break
    finally:
        generation.close()
    stats = generation.stats
    finish = "first_line" if stopped else stats.finish_reason
    return Generated(generation.text, stats.prompt_tokens, stats.completion_tokens, stats.seconds, finish)
