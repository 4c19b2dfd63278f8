"""A conversation with a model: follow-up questions keep the earlier turns, each answer carries its model stamp.

Shared by the UI, the CLI and the API. A turn's reasoning (``<think>...</think>``) is kept apart from
its answer and never sent back to the model. A conversation that outgrows the context window is
never cut silently: :func:`fit` says how many of the oldest turns would have to be left out, and
the caller asks the user.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from app.engines.base import ChatOptions, Engine, GenerationStats, NotSupported, Sampling
from app.extraction import LETTERS, split_reasoning
from app.gguf_metadata import printable
from app.language import resolve_language
from app.model_card import is_demo_hash, short_hash
from app.prompts import Language, system_prompt
from app.qa import CHAT_REPEAT_PENALTY, DEFAULT_MAX_TOKENS, Answer, Query, QuestionError, ask, validate
from app.timestamps import utc_now

NOTICE = "Decision support only, not a diagnosis. / 診断ではなく意思決定支援です。"
TITLE_CHARS = 80
_THINK_TAGS = ("<think>", "</think>")


@dataclass(frozen=True)
class Stamp:
    """Which model said it, and how fast: shown under every answer, kept with it in the history."""

    file_name: str
    sha256: str
    quantization: str
    device: str
    engine: str  # the engine kind: "local", "llama-server" or "openai"
    tokens_per_second: float
    completion_tokens: int
    finish_reason: str
    endpoint: str | None = None  # the server's URL, for a model served elsewhere

    @classmethod
    def of(cls, engine: Engine, stats: GenerationStats) -> Stamp:
        card = engine.card
        return cls(file_name=card.file_name, sha256=card.sha256, quantization=card.quantization,
                   device=engine.device, engine=engine.kind, tokens_per_second=round(stats.tokens_per_second, 2),
                   completion_tokens=stats.completion_tokens, finish_reason=stats.finish_reason,
                   endpoint=card.endpoint)

    @property
    def short_hash(self) -> str:
        return short_hash(self.sha256)

    @property
    def is_demo(self) -> bool:
        return is_demo_hash(self.sha256)

    def text(self) -> str:
        """One line, as ``jmedllm ask`` prints it: source, file, hash, quantization, device, speed, end."""
        source = f"{printable(self.endpoint)} · " if self.endpoint else ""
        demo = " · demo model, not for clinical use" if self.is_demo else ""
        return (f"{source}{printable(self.file_name)} · sha256 {self.short_hash} · {printable(self.quantization)} · "
                f"{printable(self.device)}, {self.engine} engine · {self.completion_tokens} tokens, "
                f"{self.tokens_per_second:.1f} tok/s · {self.finish_reason}{demo}")


@dataclass(frozen=True)
class Turn:
    """One question and its answer; ``choices`` and ``chosen`` for a multiple-choice turn."""

    question: str
    answer: str  # the text after any reasoning
    thinking: str  # the reasoning block's text, "" if none
    stamp: Stamp
    asked_at: str
    choices: tuple[str, ...] = ()
    chosen: str = ""  # "(b) text" for each option the answer picked

    def user_text(self) -> str:
        """The question as the model is reminded of it: with its choices, one per line."""
        lines = [f"({letter}) {choice}" for letter, choice in zip(LETTERS, self.choices, strict=False)]
        return "\n".join([self.question, *lines])


@dataclass
class Conversation:
    """Turns so far; the oldest ``dropped`` of them are no longer sent to the model (the user agreed)."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    language: Language = "ja"  # set from the first question
    turns: list[Turn] = field(default_factory=list)
    dropped: int = 0
    created_at: str = field(default_factory=utc_now)

    @property
    def in_context(self) -> list[Turn]:
        """The turns the model is reminded of."""
        return self.turns[self.dropped:]

    @property
    def title(self) -> str:
        return self.turns[0].question[:TITLE_CHARS] if self.turns else ""


class NoTurnToRegenerate(QuestionError):
    """Regenerate on a conversation without answers."""

    def __init__(self) -> None:
        super().__init__("There is no answer to regenerate yet. / 再生成する回答がまだありません。")


@dataclass(frozen=True)
class Fit:
    """Whether the next question fits the context window with room for the answer.

    ``drop``: how many more of the oldest turns to leave out so that it fits (0 when it does), None
    when even the question alone does not fit. ``prompt_tokens`` is None where the engine cannot
    count (a server that templates chats itself): it is then assumed to fit.
    """

    fits: bool
    prompt_tokens: int | None
    n_ctx: int
    drop: int | None


def messages(conversation: Conversation, question: str, language: Language) -> list[dict[str, str]]:
    """The system prompt, the turns in context (answers without their reasoning), then ``question``."""
    chat = [{"role": "system", "content": system_prompt(language)}]
    for turn in conversation.in_context:
        chat += [{"role": "user", "content": turn.user_text()}, {"role": "assistant", "content": turn.answer}]
    return [*chat, {"role": "user", "content": question.strip()}]


def fit(engine: Engine, conversation: Conversation, question: str, max_tokens: int = DEFAULT_MAX_TOKENS,
        thinking: bool | None = None, language: str = "auto", cancel: threading.Event | None = None) -> Fit:
    """Whether asking ``question`` next leaves ``max_tokens`` for the answer, and what to drop if not
    (a render stopped by ``cancel`` counts as fitting: the answer that follows ends at once). An invalid
    question (empty, too long, not valid UTF-8) raises :class:`app.qa.QuestionError` before any tokenizing."""
    validate(Query(text=question, max_tokens=max_tokens))
    lang = _language(conversation, question, language)
    kept = len(conversation.in_context)
    prompt_tokens: int | None = None
    for drop in range(kept + 1):
        trial = replace(conversation, dropped=conversation.dropped + drop)
        try:
            prompt, _stops = engine.render_chat(messages(trial, question, lang), cancel, thinking)
        except NotSupported:
            return Fit(True, None, engine.n_ctx, 0)
        tokens = len(engine.tokenize(prompt))
        if prompt_tokens is None:
            prompt_tokens = tokens
        if tokens + max_tokens <= engine.n_ctx:
            return Fit(drop == 0, prompt_tokens, engine.n_ctx, drop)
    return Fit(False, prompt_tokens, engine.n_ctx, None)


class Reply:
    """An answer being generated: iterate it for text pieces, :meth:`visible` while streaming, then
    :meth:`finish` to add the turn to the conversation."""

    def __init__(self, engine: Engine, conversation: Conversation, question: str, answer: Answer) -> None:
        self.engine = engine
        self.conversation = conversation
        self.question = question.strip()
        self.answer = answer
        self.generation = answer.generation
        self.asked_at = utc_now()
        self._opened_thinking = self.generation.prompt.rstrip().endswith("<think>")  # the template began it
        self._turn: Turn | None = None

    def __iter__(self) -> Iterator[str]:
        return iter(self.generation)

    def _split(self, text: str) -> tuple[str, str]:
        if self._opened_thinking and "<think>" not in text:
            text = "<think>" + text
        thinking, answer = split_reasoning(text)
        return thinking, answer.lstrip()

    def visible(self) -> tuple[str, str]:
        """(thinking so far, answer so far): an unclosed ``<think>`` counts as thinking, a tag still
        arriving is held back, so each part only ever grows."""
        return self._split(_without_partial_tag(self.generation.text))

    def finish(self) -> Turn:
        """End the generation (stopping it if still running) and append its turn to the conversation."""
        if self._turn is None:
            self.generation.close()
            thinking, answer = self._split(self.generation.text)
            self._turn = Turn(question=self.question, answer=answer.rstrip(), thinking=thinking,
                              stamp=Stamp.of(self.engine, self.generation.stats), asked_at=self.asked_at,
                              choices=self.answer.choices, chosen=self.answer.chosen_text())
            self.conversation.turns.append(self._turn)
        return self._turn


def answer(engine: Engine, conversation: Conversation, question: str, cancel: threading.Event | None = None,
           max_tokens: int = DEFAULT_MAX_TOKENS, thinking: bool | None = None, drop: int = 0,
           language: str = "auto") -> Reply:
    """Start answering ``question`` as the next turn, leaving out ``drop`` more of the oldest turns.

    ``language`` ("auto", "ja", "en") is the conversation's from its first question on unless given.
    Raises before generating (invalid question, busy engine, prompt too long); the conversation is
    then unchanged.
    """
    validate(Query(text=question, max_tokens=max_tokens))
    lang = _language(conversation, question, language)
    dropped = min(len(conversation.turns), conversation.dropped + max(0, drop))
    trial = replace(conversation, dropped=dropped)
    sampling = Sampling(max_tokens=max_tokens, repeat_penalty=CHAT_REPEAT_PENALTY)
    generation = engine.stream_chat(messages(trial, question, lang), sampling, cancel,
                                    options=ChatOptions(conversation=conversation.id, thinking=thinking))
    conversation.language, conversation.dropped = lang, dropped
    return Reply(engine, conversation, question, Answer(generation, lang, (), None, generation.prompt))


def answer_choices(engine: Engine, conversation: Conversation, question: str, choices: tuple[str, ...],
                   cancel: threading.Event | None = None, max_tokens: int = DEFAULT_MAX_TOKENS,
                   language: str = "auto", template: str | None = None, shots: int = 0) -> Reply:
    """Start answering a multiple-choice question as today's Ask does (the paper template, no earlier
    turns); the turn then joins the conversation like any other."""
    lang = _language(conversation, question, language)
    started = ask(engine, Query(text=question, choices=tuple(choices), language=lang, template=template,
                                shots=shots, max_tokens=max_tokens), cancel)
    conversation.language = lang
    return Reply(engine, conversation, question, started)


def regenerate(engine: Engine, conversation: Conversation, cancel: threading.Event | None = None,
               max_tokens: int = DEFAULT_MAX_TOKENS, thinking: bool | None = None) -> Reply:
    """Drop the last turn and answer its question again (the same way: chat or multiple choice).

    If the new answer cannot start, the last turn is put back.
    """
    if not conversation.turns:
        raise NoTurnToRegenerate()
    last = conversation.turns.pop()
    dropped = conversation.dropped
    conversation.dropped = min(dropped, len(conversation.turns))
    try:
        if last.choices:
            return answer_choices(engine, conversation, last.question, last.choices, cancel, max_tokens,
                                  conversation.language)
        return answer(engine, conversation, last.question, cancel, max_tokens, thinking,
                      language=conversation.language)
    except BaseException:
        conversation.turns.append(last)
        conversation.dropped = dropped
        raise


def _language(conversation: Conversation, question: str, language: str) -> Language:
    """An explicit language wins; "auto" keeps the conversation's, or detects it from its first question."""
    if language == "auto" and conversation.turns:
        return conversation.language
    return resolve_language(question, language)


def _without_partial_tag(text: str) -> str:
    """``text`` less a trailing beginning of ``<think>`` or ``</think>`` (the rest of it may be on its way)."""
    for size in range(max(map(len, _THINK_TAGS)) - 1, 0, -1):
        tail = text[-size:]
        if any(tag.startswith(tail) and tag != tail for tag in _THINK_TAGS):
            return text[: len(text) - len(tail)]
    return text
