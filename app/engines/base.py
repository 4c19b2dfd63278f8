"""The engine interface: what the UI, the CLI and the benchmark may ask of a loaded model.

An engine streams raw completions with cancel, renders chat prompts, counts tokens, describes its
model (the card), and declares optional capabilities (such as choice log-likelihood) that not
every engine has. One generation runs at a time: :meth:`Engine.stream` takes the engine's lock
(a second caller gets :class:`EngineBusy`, or waits when asked to), and the returned
:class:`Generation` releases it when its iteration ends or it is closed.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from app.errors import UserError
from app.model_card import ModelCard

DEFAULT_SEED = 1234
LOGLIK = "loglik"  # capability: log-probabilities of given continuations (the benchmark's loglik mode)


class EngineError(UserError, RuntimeError):
    """A generation request that cannot be served; the message is meant for the user."""


class EngineBusy(EngineError):
    """Another generation is running on this model."""

    def __init__(self) -> None:
        super().__init__("The model is answering another question. Wait for it to finish or press Stop.")


class PromptTooLong(EngineError):
    """The prompt does not fit in the context window."""

    def __init__(self, prompt_tokens: int, n_ctx: int) -> None:
        super().__init__(
            f"The prompt is {prompt_tokens} tokens long, but the model's context window is {n_ctx} "
            "tokens. Shorten the question or load the model with a larger context size."
        )
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


class NotSupported(EngineError):
    """The engine lacks a capability the request needs."""


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. ``temperature == 0`` is greedy and, with a fixed seed, deterministic."""

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repeat_penalty: float = 1.0
    seed: int = DEFAULT_SEED
    stop: tuple[str, ...] = ()

    @classmethod
    def greedy(cls, max_tokens: int = 512, stop: Sequence[str] = ()) -> Sampling:
        return cls(max_tokens=max_tokens, stop=tuple(stop))


@dataclass
class GenerationStats:
    """What one generation cost: tokens, wall time, time to first token, speed, why it ended."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    first_token_seconds: float | None = None
    finish_reason: str = "running"

    @property
    def tokens_per_second(self) -> float:
        """Decode speed: tokens after the first, over the time after the first token."""
        if self.first_token_seconds is None or self.completion_tokens < 2:
            return 0.0
        decode_time = self.seconds - self.first_token_seconds
        return (self.completion_tokens - 1) / decode_time if decode_time > 0 else 0.0


@dataclass
class OptionScores:
    """Log-probability of each option's tokens after one prompt."""

    logprobs: list[float]  # sum of token log-probabilities per option
    token_counts: list[int]
    prompt_tokens: int
    seconds: float

    def normalized(self) -> list[float]:
        return [lp / max(1, n) for lp, n in zip(self.logprobs, self.token_counts, strict=True)]


class Generation:
    """A running generation: iterate it for text pieces; ``text`` and ``stats`` fill as it runs.

    The engine's lock is held from creation until the iteration ends or :meth:`close` is called,
    so an abandoned generation never leaves the model locked.
    """

    def __init__(self, pieces: Iterator[str], stats: GenerationStats, release: Callable[[], None]):
        self._pieces = pieces
        self._release = release
        self._closed = False
        self.stats = stats
        self.text = ""

    def __iter__(self) -> Iterator[str]:
        try:
            for piece in self._pieces:
                self.text += piece
                yield piece
        finally:
            self.close()

    def close(self) -> None:
        """Stop generating (if still running) and free the model for the next request."""
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._pieces, "close", None)
            if close is not None:
                close()
        finally:
            if self.stats.finish_reason == "running":
                self.stats.finish_reason = "cancelled"
            self._release()

    def __del__(self) -> None:
        self.close()

    def result(self) -> str:
        """Run to the end and return the whole text."""
        for _ in self:
            pass
        return self.text


class Exclusive:
    """The engine lock as a context manager that raises :class:`EngineBusy` when not blocking."""

    def __init__(self, lock: threading.Lock, blocking: bool) -> None:
        self._lock = lock
        self._blocking = blocking
        self._held = False

    def __enter__(self) -> Exclusive:
        if not self._lock.acquire(blocking=self._blocking):
            raise EngineBusy()
        self._held = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


class Engine(ABC):
    """One loaded model served one request at a time."""

    card: ModelCard
    backend: str  # "llama.cpp", ...
    backend_version: str  # "llama-cpp-python 0.3.36", ...
    capabilities: frozenset[str] = frozenset()
    gpu_layers: int = 0  # layers offloaded to a GPU (-1: all)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @property
    @abstractmethod
    def n_ctx(self) -> int:
        """The context window in tokens."""

    @property
    @abstractmethod
    def device(self) -> str:
        """Where the model runs, in words, for the model card."""

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @abstractmethod
    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """The prompt's tokens, as the model will see them (with its BOS where it uses one)."""

    @abstractmethod
    def render_chat(self, messages: Sequence[dict[str, str]],
                    cancel: threading.Event | None = None) -> tuple[str, tuple[str, ...]]:
        """Prompt text and stop strings for chat ``messages``.

        Stopped by ``cancel``, the prompt is empty: a generation started with the same (set)
        event then ends at once as cancelled.
        """

    @abstractmethod
    def _generate(self, tokens: list[int], sampling: Sampling, cancel: threading.Event | None,
                  stats: GenerationStats) -> Iterator[str]:
        """Yield text pieces for ``tokens`` (the lock is held); fill ``stats`` as it goes."""

    def exclusive(self, blocking: bool = False) -> Exclusive:
        """Context manager holding the model's lock; raises :class:`EngineBusy` if taken."""
        return Exclusive(self._lock, blocking)

    def stream(self, prompt: str, sampling: Sampling = Sampling(), cancel: threading.Event | None = None,
               wait: bool = False) -> Generation:
        """Start a raw completion of ``prompt``; raises before generating if busy or too long."""
        guard = self.exclusive(blocking=wait)
        guard.__enter__()
        try:
            tokens = self.tokenize(prompt)
            if len(tokens) >= self.n_ctx:
                raise PromptTooLong(len(tokens), self.n_ctx)
        except BaseException:
            guard.release()
            raise
        stats = GenerationStats(prompt_tokens=len(tokens))
        return Generation(self._generate(tokens, sampling, cancel, stats), stats, guard.release)

    def complete(self, prompt: str, sampling: Sampling = Sampling(), wait: bool = True) -> Generation:
        """Run a raw completion to the end; the returned generation holds text and stats."""
        generation = self.stream(prompt, sampling, wait=wait)
        generation.result()
        return generation

    def option_logprobs(self, prompt: str, options: Sequence[str]) -> OptionScores:
        """Sum of log P(option tokens | prompt) for each option (engines with :data:`LOGLIK`)."""
        raise NotSupported(f"The {self.backend} engine cannot score options by log-likelihood; "
                           "use the generate mode.")
