"""The mode registry: each way of asking a benchmark question declared once.

A mode turns (engine, prompt, question) into an :class:`Outcome`: the raw output kept with the
answer, its score, and what it cost. The runner, the CLI choices, the Benchmark tab and
``scripts/bench_igakuqa.py`` all come from :data:`MODES`. Adding a mode is one decorated
function here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

from app.bench.data import Question
from app.bench.metrics import gold_alternatives
from app.bench.prompting import generate, harness_prompt, harness_stop, harness_text
from app.bench.scoring import Scored, score_letters, score_response
from app.engines.base import LOGLIK, Engine
from app.extraction import LETTERS, answer_line, harness_response, top_k
from app.prompts import PaperTemplate


@dataclass(frozen=True)
class Outcome:
    """One answered question: raw output, score, token counts and why generation ended."""

    raw: str
    scored: Scored
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@dataclass(frozen=True)
class Request:
    """What a mode is given: the question, its language, the prompt, its template, the limits."""

    question: Question
    language: str
    prompt: str
    template: PaperTemplate
    max_tokens: int
    cancel: threading.Event | None
    conversation: str | None = None  # a key under which the engine may keep the evaluated prompt (shared prefix)

    @property
    def choices(self) -> tuple[str, ...]:
        return self.question.choices(self.language)


Answerer = Callable[[Engine, Request], "Outcome | None"]  # None: cancelled mid-answer


@dataclass(frozen=True)
class Mode:
    """A benchmark mode: its name, labels, help, how it answers, the engine capability it needs."""

    name: str
    label_en: str
    label_ja: str
    help: str
    answer: Answerer
    requires: str | None = None  # an engine capability (app.engines.base)
    in_ui: bool = True

    def label(self, language: str) -> str:
        return self.label_ja if language == "ja" else self.label_en

    def available(self, engine: Engine) -> bool:
        return self.requires is None or self.requires in engine.capabilities


MODES: dict[str, Mode] = {}
DEFAULT_MODE = "generate"


def mode(name: str, label_en: str, label_ja: str, help: str, requires: str | None = None,
         in_ui: bool = True) -> Callable[[Answerer], Answerer]:
    """Register the decorated function as mode ``name`` (registration order is display order)."""

    def register(answer: Answerer) -> Answerer:
        if name in MODES:
            raise ValueError(f"mode {name} is declared twice")
        MODES[name] = Mode(name, label_en, label_ja, help, answer, requires, in_ui)
        return answer

    return register


def _generated(engine: Engine, request: Request, stop_early: bool) -> Outcome | None:
    """Generate, then read both answer lines: the corrected one from the continuation, the paper's
    from the text the harness reads (:func:`app.bench.prompting.harness_text`). ``stop_early``: stop
    once more tokens cannot change the paper's line (:func:`app.bench.prompting.harness_stop`)."""
    paper_prompt = harness_prompt(request.question, request.language, request.template)
    gen = generate(engine, request.prompt, until=harness_stop(paper_prompt) if stop_early else None,
                   max_tokens=request.max_tokens, cancel=request.cancel, conversation=request.conversation)
    cancel = request.cancel
    if gen.finish_reason == "cancelled" or (cancel is not None and cancel.is_set()
                                            and gen.finish_reason != "first_line"):
        return None
    q = request.question
    response = answer_line(gen.raw, request.template.response_marker)
    paper_response = harness_response(harness_text(paper_prompt, gen.raw))
    scored = score_response(q.problem_id, response, request.choices, q.answer, q.kinki, paper_response)
    return Outcome(gen.raw, scored, gen.prompt_tokens, gen.completion_tokens, gen.finish_reason)


@mode("generate", "Generate (paper's scoring)", "生成（論文の採点）",
      "greedy, stop once the line the paper's harness reads is complete (Japanese: the first line; "
      "English: the first line after '### Answer:', else the end or 256 tokens)")
def generate_until_answer(engine: Engine, request: Request) -> Outcome | None:
    return _generated(engine, request, stop_early=True)


@mode("loglik", "Log-likelihood", "対数尤度", "choice log-likelihood", requires=LOGLIK)
def loglik(engine: Engine, request: Request) -> Outcome | None:
    choices = request.choices
    if not choices:  # numeric entry: nothing to score, so generate
        return _generated(engine, request, stop_early=True)
    q = request.question
    scores = engine.option_logprobs(request.prompt, choices, request.conversation)
    k = len(gold_alternatives(q.problem_id, q.answer)[0])
    picks = tuple(LETTERS[i] for i in top_k(scores.logprobs, k))
    scored = score_letters(q.problem_id, picks, choices, q.answer, q.kinki)
    raw = json.dumps({"logprobs": scores.logprobs, "tokens": scores.token_counts})
    return Outcome(raw, scored, scores.prompt_tokens, 0, "loglik")


@mode("paper", "Paper (256 tokens)", "論文どおり（256トークン）",
      "greedy 256 tokens, then the harness's line (the paper's procedure)", in_ui=False)
def paper_256(engine: Engine, request: Request) -> Outcome | None:
    return _generated(engine, request, stop_early=False)


def mode_help() -> str:
    """"name: help; ..." for the CLI."""
    return "; ".join(f"{m.name}: {m.help}" for m in MODES.values())
