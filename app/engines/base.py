"""The engine interface: what the UI, the CLI and the benchmark may ask of a loaded model.

An engine streams raw completions and chats with cancel, counts tokens, describes its model (the
card), and declares optional capabilities (such as choice log-likelihood) that not every engine
has. An engine has ``slots``: how many generations may run at once (one in process, N on a
serving engine). :meth:`Engine.stream` takes a slot (a caller finding none free gets
:class:`EngineBusy`, or waits when asked to), and the returned :class:`Generation` frees it when
its iteration ends or it is closed.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from app.errors import UserError
from app.model_card import ModelCard

DEFAULT_SEED = 1234
LOGLIK = "loglik"  # capability: log-probabilities of given continuations (the benchmark's loglik mode)


class EngineError(UserError, RuntimeError):
    """A generation request that cannot be served; the message is meant for the user."""


class EngineBusy(EngineError):
    """Every slot of this model is generating."""

    def __init__(self) -> None:
        super().__init__("The model is answering another question. Wait for it to finish or press Stop.")


class EngineUnavailable(EngineError):
    """The engine's server cannot be reached or answered with an error; the message names it."""


class PromptTooLong(EngineError):
    """The prompt does not fit in the context window."""

    def __init__(self, prompt_tokens: int, n_ctx: int) -> None:
        super().__init__(
            f"The prompt is {prompt_tokens} tokens long, but the model's context window is {n_ctx} "
            "tokens. Shorten the question or load the model with a larger context size."
        )
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


class EmptyPrompt(EngineError):
    """The prompt has no tokens (an empty text): the model would have nothing to continue."""

    def __init__(self) -> None:
        super().__init__("The prompt is empty: it has no tokens for the model to read. Give a question or some text.")


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


@dataclass(frozen=True)
class ChatOptions:
    """How to answer a chat beyond its sampling."""

    conversation: str | None = None  # the conversation it continues (an engine may keep its evaluated prompt)
    thinking: bool | None = None  # reasoning on or off, for chat templates that switch it; None: their default


@dataclass
class GenerationStats:
    """What one generation cost: tokens, wall time, time to first token, speed, why it ended."""

    prompt_tokens: int = 0
    cached_tokens: int = 0  # of the prompt's tokens, those not evaluated again (a conversation's earlier turns)
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
    cached_tokens: int = 0  # prompt tokens taken from a conversation's kept prompt, not evaluated

    def normalized(self) -> list[float]:
        return [lp / max(1, n) for lp, n in zip(self.logprobs, self.token_counts, strict=True)]


class Generation:
    """A running generation: iterate it for text pieces; ``text`` and ``stats`` fill as it runs.

    The engine's lock is held from creation until the iteration ends or :meth:`close` is called,
    so an abandoned generation never leaves the model locked.
    """

    def __init__(self, pieces: Iterator[str], stats: GenerationStats, release: Callable[[], None],
                 prompt: str = "") -> None:
        self._pieces = pieces
        self._release = release
        self._closed = False
        self.stats = stats
        self.prompt = prompt  # the prompt text as the model sees it ("" where a server templates the chat)
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


class Slots:
    """A counted set of generation slots; :meth:`take` gives a :class:`SlotHold` or raises :class:`EngineBusy`."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("an engine needs at least one slot")
        self.count = count
        self._free = threading.Semaphore(count)
        self._lock = threading.Lock()
        self.in_use = 0

    def take(self, blocking: bool) -> SlotHold:
        if not self._free.acquire(blocking=blocking):
            raise EngineBusy()
        with self._lock:
            self.in_use += 1
        return SlotHold(self)

    def _give_back(self) -> None:
        with self._lock:
            self.in_use -= 1
        self._free.release()


class SlotHold:
    """One taken slot, as a context manager; :meth:`release` is idempotent."""

    def __init__(self, slots: Slots) -> None:
        self._slots = slots
        self._held = True

    def __enter__(self) -> SlotHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._give_back()


class Engine(ABC):
    """One model, answering up to ``slots`` requests at a time."""

    card: ModelCard
    kind: str  # how it was chosen: "local", "llama-server" or "openai" (app.engines.factory.ENGINE_KINDS)
    backend: str  # "llama.cpp", ...
    backend_version: str  # "llama-cpp-python 0.3.36", ...
    capabilities: frozenset[str] = frozenset()
    gpu_layers: int = 0  # layers offloaded to a GPU (-1: all)

    def __init__(self, slots: int = 1) -> None:
        self._slots = Slots(slots)

    @property
    def slots(self) -> int:
        """How many generations may run at once."""
        return self._slots.count

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
        """Whether every slot is generating."""
        return self._slots.in_use >= self._slots.count

    @abstractmethod
    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """The prompt's tokens, as the model will see them (with its BOS where it uses one)."""

    def render_chat(self, messages: Sequence[dict[str, str]], cancel: threading.Event | None = None,
                    thinking: bool | None = None) -> tuple[str, tuple[str, ...]]:
        """Prompt text and stop strings for chat ``messages`` (engines that template chats themselves);
        ``thinking`` switches reasoning on or off where the template can (None: its default).

        Stopped by ``cancel``, the prompt is empty: a generation started with the same (set)
        event then ends at once as cancelled.
        """
        raise NotSupported(f"The {self.backend} engine does not render chat prompts itself.")

    @abstractmethod
    def _generate(self, prompt: str, sampling: Sampling, cancel: threading.Event | None,
                  stats: GenerationStats, conversation: str | None = None) -> Iterator[str]:
        """Text pieces completing ``prompt`` (a slot is held); fill ``stats`` as it goes.

        ``conversation`` names the conversation the prompt continues, for an engine that keeps
        conversations' evaluated prompts (None: a prompt of its own).

        Called before the :class:`Generation` exists: an engine that raises here (a server refusing
        the request) refuses before generating, and the slot is freed.
        """

    def slot(self, blocking: bool = False) -> SlotHold:
        """Take one generation slot (a context manager); raises :class:`EngineBusy` if none is free."""
        return self._slots.take(blocking)

    def stream(self, prompt: str, sampling: Sampling = Sampling(), cancel: threading.Event | None = None,
               wait: bool = False, conversation: str | None = None) -> Generation:
        """Start a raw completion of ``prompt``; raises before generating if busy or too long.

        ``conversation``: the key of the conversation ``prompt`` continues (see :class:`ChatOptions`).
        """
        hold = self.slot(blocking=wait)
        try:
            n_tokens = len(self.tokenize(prompt))
            if n_tokens >= self.n_ctx:
                raise PromptTooLong(n_tokens, self.n_ctx)
            stats = GenerationStats(prompt_tokens=n_tokens)
            pieces = self._generate(prompt, sampling, cancel, stats, conversation)
        except BaseException:
            hold.release()
            raise
        return Generation(pieces, stats, hold.release, prompt)

    def stream_chat(self, messages: Sequence[dict[str, str]], sampling: Sampling = Sampling(),
                    cancel: threading.Event | None = None, wait: bool = False,
                    options: ChatOptions = ChatOptions()) -> Generation:
        """Start answering chat ``messages`` with the model's chat template (its stop strings added)."""
        prompt, stops = self.render_chat(messages, cancel, options.thinking)
        return self.stream(prompt, replace(sampling, stop=(*sampling.stop, *stops)), cancel, wait,
                           options.conversation)

    def complete(self, prompt: str, sampling: Sampling = Sampling(), wait: bool = True) -> Generation:
        """Run a raw completion to the end; the returned generation holds text and stats."""
        generation = self.stream(prompt, sampling, wait=wait)
        generation.result()
        return generation

    def recover(self, timeout_s: float) -> bool:
        """After :class:`EngineUnavailable`: wait up to ``timeout_s`` for a server engine to be back.

        False where it is not back, or where the engine has no server to wait for.
        """
        return False

    def forget(self, conversation: str) -> None:  # noqa: B027 (most engines keep nothing)
        """Drop what the engine keeps of ``conversation`` (its evaluated prompt), e.g. when it is deleted."""

    def close(self) -> None:  # noqa: B027 (engines without outside resources have nothing to free)
        """Free what the engine holds beyond memory (connections, a server process)."""

    def option_logprobs(self, prompt: str, options: Sequence[str],
                        conversation: str | None = None) -> OptionScores:
        """Sum of log P(option tokens | prompt) for each option (engines with :data:`LOGLIK`); under
        ``conversation``, as :meth:`stream`'s, the engine may keep the evaluated prompt for the next one."""
        raise NotSupported(f"The {self.backend} engine cannot score options by log-likelihood; "
                           "use the generate mode.")
