r"""Prompts from the paper's templates, the text the paper's harness reads, and when generation may stop.

The harness generates 256 tokens and reads one line of ``full_response`` = prompt + continuation
(:func:`app.extraction.harness_response`). :func:`harness_text` builds that text: the question's
zero-shot prompt, then the continuation without its reasoning blocks. With 1 or 3 worked examples
the examples are left out of it: the harness's rule (``split(marker)[1 + k]`` with ``k = 0``; its
few-shot templates are commented out) would otherwise read the first example's answer, and its own
``k`` (the number of examples) skips exactly the examples' markers, which is what leaving them
out does, except that it would also skip the model's own first ``### Answer:`` lines, which the
examples do not hold. Reading the model's answer is the faithful choice.

The generate mode stops as soon as more tokens cannot change that line
(:func:`app.extraction.harness_response_final` on :func:`harness_text`), so it gives the answer the
256 tokens would give, at a fraction of the cost. What that means depends only on the markers in
the prompt, not on its language:

- A prompt that ends with ``### 応答：`` + newline (the Japanese templates): the harness reads the
  continuation from its start (the first such marker is the prompt's own; nothing outranks it) up
  to the continuation's own such marker, stripped, to its first ``\n``. Once the continuation holds
  a ``\n`` after something not blank, that line is what the harness reads, whatever follows: a
  later marker starts after that ``\n``. So the stop is at the first complete non-blank line, as
  before, and it is exact (or earlier, when the continuation writes the marker itself: it closes
  the text read).
- A prompt with ``### Response:`` (the English templates): a ``### Answer:`` anywhere in the
  continuation outranks it, so generation goes on until the first line after the first
  ``### Answer:`` is complete, to the end of the text, or to the token limit. The one divergence
  left: a continuation that writes the Japanese marker after that line (it would outrank
  ``### Answer:``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from app.bench.data import Question
from app.engines.base import Engine, Sampling
from app.extraction import harness_response_final, strip_reasoning
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


def harness_prompt(question: Question, language: str, template: PaperTemplate) -> str:
    """The prompt as the harness's ``full_response`` starts: ``template`` filled, zero-shot."""
    return render(template, question.text(language), question.choices(language))


def harness_text(prompt: str, continuation: str) -> str:
    """``full_response`` as the harness reads it: :func:`harness_prompt` + the continuation without
    its reasoning blocks."""
    return prompt + strip_reasoning(continuation)


def harness_stop(prompt: str) -> Callable[[str], bool]:
    """The generate mode's stop rule for a question whose :func:`harness_prompt` is ``prompt``: the
    continuation so far settles the harness's answer line (see the module's docstring)."""
    return lambda continuation: harness_response_final(harness_text(prompt, continuation))


def generate(engine: Engine, prompt: str, until: Callable[[str], bool] | None = None,
             max_tokens: int = PAPER_MAX_TOKENS, cancel: threading.Event | None = None,
             conversation: str | None = None) -> Generated:
    """Greedy generation; it stops (finish reason "first_line") as soon as ``until(text so far)``.

    ``conversation``: a key under which the engine keeps the evaluated prompt, so the next prompt
    with the same key evaluates only what differs (a run's shared template prefix).
    """
    generation = engine.stream(prompt, Sampling.greedy(max_tokens=max_tokens), cancel=cancel, wait=True,
                               conversation=conversation)
    stopped = False
    try:
        for _ in generation:
            if until is not None and until(generation.text):
                stopped = True
                break
    finally:
        generation.close()
    stats = generation.stats
    finish = "first_line" if stopped else stats.finish_reason
    return Generated(generation.text, stats.prompt_tokens, stats.completion_tokens, stats.seconds, finish)
