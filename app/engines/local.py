"""The llama.cpp engine: one loaded GGUF, one generation at a time, streamed and cancellable.

``llama_cpp.Llama`` has no lock of its own and wrong defaults for this app (512-token context,
random seed, verbose logging, half the cores). :class:`Engine` sets them, serialises access with
a non-blocking lock (a second caller gets :class:`EngineBusy`, not a corrupted KV cache), renders
chat prompts with the GGUF's own template, and measures every generation.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from app.devices import gpu_devices
from app.hashing import Progress
from app.model_card import ModelCard, read_model_card

GpuLayers = int | Literal["auto"]
DEFAULT_CONTEXT = 4096
DEFAULT_SEED = 1234
PLAIN_CHAT_STOP = "\n### "


class EngineError(RuntimeError):
    """A generation request that cannot be served; the message is meant for the user."""


class EngineBusy(EngineError):
    """Another generation is running on this model."""


class PromptTooLong(EngineError):
    """The prompt does not fit in the context window."""

    def __init__(self, prompt_tokens: int, n_ctx: int) -> None:
        super().__init__(
            f"The prompt is {prompt_tokens} tokens long, but the model's context window is {n_ctx} "
            "tokens. Shorten the question or load the model with a larger context size."
        )
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


def default_threads() -> int:
    """All cores this process may use (llama-cpp-python's own default is half of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class EngineConfig:
    """How to load a model: GPU layers ("auto" or a number), context size, threads, seed."""

    model_path: Path
    n_gpu_layers: GpuLayers = "auto"
    n_ctx: int = DEFAULT_CONTEXT
    n_threads: int | None = None
    seed: int = DEFAULT_SEED

    def resolved_gpu_layers(self) -> int:
        if self.n_gpu_layers == "auto":
            return -1 if gpu_devices() else 0
        return int(self.n_gpu_layers)


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
            self._pieces.close()  # type: ignore[attr-defined]
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


class Engine:
    """One loaded GGUF model served one request at a time."""

    def __init__(self, config: EngineConfig, on_hash_progress: Progress | None = None) -> None:
        self.card: ModelCard = read_model_card(config.model_path, on_hash_progress)
        self.config = config
        self.gpu_layers = config.resolved_gpu_layers()
        self.n_threads = config.n_threads or default_threads()
        self._lock = threading.Lock()
        try:
            self._llm = llama_cpp.Llama(
                model_path=self.card.path,
                n_gpu_layers=self.gpu_layers,
                n_ctx=config.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                seed=config.seed,
                verbose=False,
            )
        except ValueError as exc:
            raise EngineError(f"llama.cpp could not load {self.card.file_name}: {exc}") from exc
        template = self.card.chat_template
        self._chat_formatter = (
            Jinja2ChatFormatter(
                template=template,
                eos_token=self._token_text(self._llm.token_eos()),
                bos_token=self._token_text(self._llm.token_bos()),
            )
            if template
            else None
        )

    @classmethod
    def load(cls, model_path: Path | str, on_hash_progress: Progress | None = None, **options: object) -> Engine:
        """Load a GGUF with the app's defaults; ``options`` are :class:`EngineConfig` fields."""
        config = EngineConfig(model_path=Path(model_path), **options)  # type: ignore[arg-type]
        return cls(config, on_hash_progress)

    @property
    def n_ctx(self) -> int:
        return self._llm.n_ctx()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @property
    def device(self) -> str:
        """Where the layers run, in words, for the model card."""
        gpus = gpu_devices()
        if self.gpu_layers == 0 or not gpus:
            return f"CPU ({self.n_threads} threads)"
        if self.gpu_layers < 0:
            return f"GPU: {gpus[0]} (all layers)"
        return f"GPU: {gpus[0]} ({self.gpu_layers} layers) + CPU"

    @property
    def llama(self) -> llama_cpp.Llama:
        """The underlying ``llama_cpp.Llama``; hold :meth:`exclusive` while using it."""
        return self._llm

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)

    def render_chat(self, messages: Sequence[dict[str, str]]) -> tuple[str, tuple[str, ...]]:
        """Prompt text and stop strings for ``messages``, through the GGUF's own chat template.

        A GGUF without a template gets a plain "### System/User/Assistant" layout (the model card
        says so) instead of llama-cpp-python's silent llama-2 fallback.
        """
        if self._chat_formatter is not None:
            response = self._chat_formatter(messages=list(messages))
            stops = response.stop if isinstance(response.stop, list) else [response.stop]
            return response.prompt, tuple(s for s in stops if s)
        lines = [f"### {m['role'].capitalize()}:\n{m['content']}\n" for m in messages]
        return "".join(lines) + "### Assistant:\n", (PLAIN_CHAT_STOP,)

    def exclusive(self, blocking: bool = False) -> _Exclusive:
        """Context manager holding the model's lock; raises :class:`EngineBusy` if taken."""
        return _Exclusive(self._lock, blocking)

    def stream(
        self,
        prompt: str,
        sampling: Sampling = Sampling(),
        cancel: threading.Event | None = None,
        wait: bool = False,
    ) -> Generation:
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
        return Generation(self._run(tokens, sampling, cancel, stats), stats, guard.release)

    def complete(self, prompt: str, sampling: Sampling = Sampling(), wait: bool = True) -> Generation:
        """Run a raw completion to the end; the returned generation holds text and stats."""
        generation = self.stream(prompt, sampling, wait=wait)
        generation.result()
        return generation

    def _run(
        self,
        tokens: list[int],
        sampling: Sampling,
        cancel: threading.Event | None,
        stats: GenerationStats,
    ) -> Iterator[str]:
        start = time.perf_counter()
        sampled = 0

        def count_and_check(_input_ids: object, _logits: object) -> bool:
            nonlocal sampled
            sampled += 1
            if stats.first_token_seconds is None:
                stats.first_token_seconds = time.perf_counter() - start
            return bool(cancel is not None and cancel.is_set())

        try:
            self._llm.reset()  # no prefix reuse: identical prompts give identical greedy output
            chunks = self._llm.create_completion(
                prompt=tokens,
                max_tokens=min(sampling.max_tokens, self.n_ctx - len(tokens)),
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                min_p=0.0,
                repeat_penalty=sampling.repeat_penalty,
                seed=sampling.seed,
                stop=list(sampling.stop),
                stream=True,
                stopping_criteria=llama_cpp.StoppingCriteriaList([count_and_check]),
            )
            finish = "length"
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice["text"]:
                    yield choice["text"]
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
            stats.finish_reason = "cancelled" if cancel is not None and cancel.is_set() else finish
        except GeneratorExit:
            stats.finish_reason = "cancelled"
            raise
        finally:
            stats.completion_tokens = sampled
            stats.seconds = time.perf_counter() - start


class _Exclusive:
    """The engine lock as a context manager that raises :class:`EngineBusy` when not blocking."""

    def __init__(self, lock: threading.Lock, blocking: bool) -> None:
        self._lock = lock
        self._blocking = blocking
        self._held = False

    def __enter__(self) -> _Exclusive:
        if not self._lock.acquire(blocking=self._blocking):
            raise EngineBusy(
                "The model is answering another question. Wait for it to finish or press Stop."
            )
        self._held = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()
