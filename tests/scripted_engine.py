"""A scripted engine for fast tests of the logic above the engine (qa, the runner, the tab's tables).

It implements the real :class:`app.engines.base.Engine` interface (slots, busy, streaming,
cancel, prompt-length checks all come from the base class); only the text comes from a script:
``reply(prompt) -> str``. One character is one token. Log-likelihood is available when a
``scores(prompt, options) -> list[float]`` script is given. The real-engine tests stay beside
these: this engine never stands in for llama.cpp in an integration test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

from app.engines.base import LOGLIK, Engine, GenerationStats, OptionScores, PromptTooLong, Sampling
from app.model_card import ModelCard

Reply = Callable[[str], str]
Scores = Callable[[str, Sequence[str]], list[float]]

SCRIPTED_CARD = ModelCard(
    path="/nowhere/scripted.gguf", file_name="scripted.gguf", file_size=1, sha256="5c" * 32,
    architecture="scripted", name="Scripted test engine", size_label="0", quantization="none",
    context_length=4096, parameters=0, chat_template=None,
)


class ScriptedEngine(Engine):
    """An engine whose answers come from ``reply``; ``pause_s`` slows each token (for cancel tests)."""

    kind = "local"  # stands in for the in-process engine
    backend = "scripted"
    backend_version = "test"

    def __init__(self, reply: Reply, scores: Scores | None = None, n_ctx: int = 4096, pause_s: float = 0.0,
                 card: ModelCard = SCRIPTED_CARD, slots: int = 1) -> None:
        super().__init__(slots)
        self.card = card
        self._reply = reply
        self._scores = scores
        self._n_ctx = n_ctx
        self._pause_s = pause_s
        self.prompts: list[str] = []  # every prompt asked, in order
        self.conversations: list[str | None] = []  # the conversation key of each prompt, in order
        if scores is not None:
            self.capabilities = frozenset({LOGLIK})

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def device(self) -> str:
        return "scripted"

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        return [ord(ch) for ch in text]

    def render_chat(self, messages: Sequence[dict[str, str]], cancel: threading.Event | None = None,
                    thinking: bool | None = None) -> tuple[str, tuple[str, ...]]:
        text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
        return text + "<assistant>", ("<user>",)

    def _generate(self, prompt: str, sampling: Sampling, cancel: threading.Event | None,
                  stats: GenerationStats, conversation: str | None = None) -> Iterator[str]:
        start = time.perf_counter()
        self.prompts.append(prompt)
        self.conversations.append(conversation)
        text = self._reply(prompt)
        for stop in sampling.stop:
            text = text.split(stop)[0]
        stats.finish_reason = "length"
        try:
            for count, piece in enumerate(text[: sampling.max_tokens], start=1):
                if cancel is not None and cancel.is_set():
                    stats.finish_reason = "cancelled"
                    return
                if stats.first_token_seconds is None:
                    stats.first_token_seconds = time.perf_counter() - start
                time.sleep(self._pause_s)
                stats.completion_tokens = count
                yield piece
            if len(text) <= sampling.max_tokens:
                stats.finish_reason = "stop"
        except GeneratorExit:
            stats.finish_reason = "cancelled"
            raise
        finally:
            stats.seconds = time.perf_counter() - start

    def option_logprobs(self, prompt: str, options: Sequence[str],
                        conversation: str | None = None) -> OptionScores:
        if self._scores is None:
            return super().option_logprobs(prompt, options, conversation)
        if len(prompt) >= self.n_ctx:
            raise PromptTooLong(len(prompt), self.n_ctx)
        with self.slot(blocking=True):
            self.prompts.append(prompt)
            self.conversations.append(conversation)
            return OptionScores(self._scores(prompt, options), [len(o) for o in options], len(prompt), 0.0)
