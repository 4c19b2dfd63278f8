"""The ``local`` engine: a GGUF loaded in this process through llama-cpp-python.

``llama_cpp.Llama`` has no lock of its own and wrong defaults for this app (512-token context,
random seed, verbose logging, half the cores). :class:`LocalEngine` sets them, serialises access
through the engine's one slot (a second caller gets :class:`EngineBusy`, not a corrupted KV cache),
renders chat prompts with the GGUF's own template (bounded in time and size, see
:mod:`app.engines.chat_template`), measures every generation, and scores options
by log-likelihood.

Conversations: a raw prompt is evaluated from scratch (identical prompts give identical greedy
output). A prompt that continues a conversation (``stream(..., conversation=KEY)``, or
``ChatOptions(conversation=KEY)``) takes the part of it that the KV cache already holds for that
conversation (its previous prompt, less a few tokens) from the cache, and evaluates the rest so
that the answer is the one from scratch. After each of its generations the conversation's KV state
is copied into a :class:`ConversationCache` (bounded in bytes), and put back when the conversation
continues after another one used the model, so two people taking turns do not evict each other
(see :mod:`app.engines.conversation_cache`).

Log-likelihood memory: the Llama keeps ``logits_all=False`` (``logits_all`` would hold n_ctx x
vocab floats, about 2.3 GiB at 4,096 tokens with Qwen's 152k vocabulary). The shared prompt is
evaluated once; its last logits row scores each option's first token; then each option's tokens
are decoded in one batch after the prompt with logits requested for every option position, and
the KV cache is rewound to the end of the prompt before the next option. Scored under a
conversation key, the prompt is evaluated as a generation's would be (only what the kept prompt
does not hold, the same scores as from scratch) and kept for the next one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack, cast

import llama_cpp
import numpy as np

from app.engines.base import (
    DEFAULT_SEED,
    LOGLIK,
    EmptyPrompt,
    Engine,
    EngineError,
    GenerationStats,
    OptionScores,
    PromptTooLong,
    Sampling,
)
from app.engines.chat_template import ChatTemplate, render_messages
from app.engines.conversation_cache import (
    DEFAULT_KV_CACHE_BYTES,
    ConversationCache,
    KvState,
    clean_end,
    reusable,
)
from app.engines.devices import describe_device, gpu_devices
from app.engines.options import DEFAULT_CONTEXT, GpuLayers, default_threads
from app.hashing import HashProgress
from app.model_card import read_model_card
from app.numeric import log_softmax

if TYPE_CHECKING:
    from llama_cpp.llama_types import CreateCompletionStreamResponse

BACKEND_VERSION = f"llama-cpp-python {llama_cpp.__version__}"


@dataclass(frozen=True)
class EngineConfig:
    """How to load a model: GPU layers ("auto" or a number), context size, threads, seed, and the
    memory kept for conversations' evaluated prompts."""

    model_path: Path
    n_gpu_layers: GpuLayers = "auto"
    n_ctx: int = DEFAULT_CONTEXT
    n_threads: int | None = None
    seed: int = DEFAULT_SEED
    kv_cache_bytes: int = DEFAULT_KV_CACHE_BYTES

    def resolved_gpu_layers(self) -> int:
        if self.n_gpu_layers == "auto":
            return -1 if gpu_devices() else 0
        return int(self.n_gpu_layers)


class EngineOptions(TypedDict, total=False):
    """The optional :class:`EngineConfig` fields, as keyword arguments of :meth:`LocalEngine.load`."""

    n_gpu_layers: GpuLayers
    n_ctx: int
    n_threads: int | None
    seed: int
    kv_cache_bytes: int


class LocalEngine(Engine):
    """One GGUF loaded in this process by llama.cpp."""

    kind = "local"
    backend = "llama.cpp"
    backend_version = BACKEND_VERSION
    capabilities = frozenset({LOGLIK})

    def __init__(self, config: EngineConfig, on_hash_progress: HashProgress | None = None) -> None:
        super().__init__()
        self.card = read_model_card(config.model_path, on_hash_progress)
        self.config = config
        self.gpu_layers = config.resolved_gpu_layers()
        self.n_threads = config.n_threads or default_threads()
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
        self.conversation_cache = ConversationCache(config.kv_cache_bytes)
        self._kv_owner: str | None = None  # the conversation whose prompt the KV cache holds
        self._clean = 0  # how many of its tokens a follow-up may reuse (see KvState.clean)
        template = self.card.chat_template
        self.chat_template = (
            ChatTemplate(template, bos_token=self._token_text(self._llm.token_bos()),
                         eos_token=self._token_text(self._llm.token_eos()))
            if template
            else None
        )

    @classmethod
    def load(cls, model_path: Path | str, on_hash_progress: HashProgress | None = None,
             **options: Unpack[EngineOptions]) -> LocalEngine:
        """Load a GGUF with the app's defaults; ``options`` are :class:`EngineConfig` fields."""
        config = EngineConfig(model_path=Path(model_path), **options)
        return cls(config, on_hash_progress)

    @property
    def n_ctx(self) -> int:
        return self._llm.n_ctx()

    @property
    def device(self) -> str:
        return describe_device(self.gpu_layers, self.n_threads)

    @property
    def llama(self) -> llama_cpp.Llama:
        """The underlying ``llama_cpp.Llama``; hold :meth:`slot` while using it.

        Its user may evaluate other tokens, so its KV cache no longer counts as any conversation's
        (the next turn of one puts that conversation's state back from the cache).
        """
        self._kv_owner = None
        return self._llm

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)

    def render_chat(self, messages: Sequence[dict[str, str]], cancel: threading.Event | None = None,
                    thinking: bool | None = None) -> tuple[str, tuple[str, ...]]:
        return render_messages(self.chat_template, messages, cancel, thinking)

    def _prompt_tokens(self, prompt: str) -> list[int]:
        """``prompt``'s tokens; :class:`EmptyPrompt` where it has none (llama.cpp fails on an empty prompt)."""
        tokens = self.tokenize(prompt)
        if not tokens:
            raise EmptyPrompt()
        return tokens

    def _generate(self, prompt: str, sampling: Sampling, cancel: threading.Event | None,
                  stats: GenerationStats, conversation: str | None = None) -> Iterator[str]:
        """Refuses a prompt of no tokens before the generation exists, unless stopped before it began
        (a chat prompt stopped while rendering is empty): that one ends at once as cancelled."""
        stopped = cancel is not None and cancel.is_set()
        tokens = self.tokenize(prompt) if stopped else self._prompt_tokens(prompt)
        return self._completion(tokens, sampling, cancel, stats, conversation)

    def _completion(self, tokens: list[int], sampling: Sampling, cancel: threading.Event | None,
                    stats: GenerationStats, conversation: str | None) -> Iterator[str]:
        """The text pieces llama.cpp generates after ``tokens`` (see :meth:`_generate`)."""
        start = time.perf_counter()
        limit = min(sampling.max_tokens, self.n_ctx - len(tokens))
        sampled = 0
        if cancel is not None and cancel.is_set():  # stopped before it began (e.g. while rendering the prompt)
            stats.finish_reason = "cancelled"
            return

        seen = 0  # the length of the token sequence at the last check

        def count_and_check(input_ids: Sized, _logits: object) -> bool:
            """Called for each sampled token, and once more with the same tokens when generation ends."""
            nonlocal sampled, seen
            if len(input_ids) != seen:
                seen = len(input_ids)
                sampled += 1
            if stats.first_token_seconds is None:
                stats.first_token_seconds = time.perf_counter() - start
            return bool(cancel is not None and cancel.is_set())

        try:
            stats.cached_tokens = self._prepare_kv(tokens, conversation)
            # stream=True yields chunks; llama-cpp-python annotates the union of both return kinds
            chunks = cast("Iterator[CreateCompletionStreamResponse]", self._llm.create_completion(
                prompt=tokens,
                max_tokens=limit,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                min_p=0.0,
                repeat_penalty=sampling.repeat_penalty,
                seed=sampling.seed,
                stop=list(sampling.stop),
                stream=True,
                stopping_criteria=llama_cpp.StoppingCriteriaList([count_and_check]),
            ))
            finish = "length"
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice["text"]:
                    yield choice["text"]
                if reason := choice.get("finish_reason"):
                    finish = reason
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
            stats.finish_reason = "cancelled" if cancel is not None and cancel.is_set() else finish
        except GeneratorExit:
            stats.finish_reason = "cancelled"
            raise
        finally:
            stats.completion_tokens = min(sampled, limit)  # at the limit llama.cpp samples one more, unused
            stats.seconds = time.perf_counter() - start
            if conversation is not None:
                self._keep(conversation, len(tokens), stats.cached_tokens)

    def _keep(self, conversation: str, n_prompt: int, cached: int) -> None:
        """Keep what the KV cache holds as ``conversation``'s state: a prompt of ``n_prompt`` tokens,
        evaluated from token ``cached`` on (:func:`clean_end`), and what followed it."""
        state = KvState.capture(self._llm, clean_end(n_prompt, cached, self._llm.n_batch))
        self._clean = state.clean
        self.conversation_cache.put(conversation, state)

    def forget(self, conversation: str) -> None:
        """Drop the kept KV state of ``conversation``, and empty the KV cache if it holds it."""
        with self.slot(blocking=True):
            self.conversation_cache.discard(conversation)
            if self._kv_owner == conversation:
                self._llm.reset()
                self._kv_owner = None

    def _prepare_kv(self, tokens: list[int], conversation: str | None) -> int:
        """Set the KV cache up for evaluating ``tokens``; how many of them it holds already.

        Without a conversation it is emptied. For a conversation it holds that conversation's
        evaluated prompt (put back from the cache if another prompt used it since), cut to the part
        that :func:`reusable` allows, if any.
        """
        llm = self._llm
        if conversation is not None and conversation != self._kv_owner:
            state = self.conversation_cache.get(conversation)
            self._clean = state.clean if state is not None and state.restore(llm) else 0
        self._kv_owner = conversation
        reused = 0 if conversation is None else reusable(
            _common_prefix(llm._input_ids, tokens), self._clean, len(tokens), llm.n_batch)
        if reused == 0 or not llm._ctx.kv_cache_seq_rm(-1, reused, -1):  # some models cannot cut their memory
            llm.reset()
            return 0
        llm.n_tokens = reused  # llama-cpp-python's generate() then evaluates from here on
        return reused

    def option_logprobs(self, prompt: str, options: Sequence[str],
                        conversation: str | None = None) -> OptionScores:
        """Sum of log P(option tokens | prompt) for each option, the prompt evaluated once; under
        ``conversation``, only the part its kept prompt does not hold (see :meth:`_prepare_kv`)."""
        start = time.perf_counter()
        llm = self._llm
        prompt_tokens = self._prompt_tokens(prompt)
        option_tokens = [llm.tokenize(o.encode("utf-8"), add_bos=False, special=False) or [llm.token_eos()]
                         for o in options]
        longest = max((len(t) for t in option_tokens), default=0)
        if len(prompt_tokens) + longest >= self.n_ctx:
            raise PromptTooLong(len(prompt_tokens) + longest, self.n_ctx)
        n_prompt = len(prompt_tokens)
        results: list[float] = []
        with self.slot(blocking=True):
            try:
                cached = self._prepare_kv(prompt_tokens, conversation)
                llm.eval(prompt_tokens[cached:])
                first = log_softmax(self._logits_row(-1).copy())
                for tokens in option_tokens:
                    total = float(first[tokens[0]])
                    if len(tokens) > 1:
                        batch = llm._batch
                        batch.set_batch(batch=tokens[:-1], n_past=n_prompt, logits_all=True)
                        llm._ctx.decode(batch)
                        for i, token in enumerate(tokens[1:]):
                            total += float(log_softmax(self._logits_row(i))[token])
                        llm._ctx.kv_cache_seq_rm(0, n_prompt, -1)  # rewind to the end of the prompt
                    results.append(total)
            except BaseException:
                llm.reset()
                self._kv_owner = None
                raise
            if conversation is None:
                llm.reset()
            else:
                self._keep(conversation, n_prompt, cached)
        return OptionScores(results, [len(t) for t in option_tokens], n_prompt, time.perf_counter() - start, cached)

    def _logits_row(self, index: int) -> np.ndarray:
        """The logits llama.cpp holds for batch position ``index`` (-1: the last), as a view."""
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, index),
                                     shape=(self._llm.n_vocab(),))


def _common_prefix(held: np.ndarray, tokens: Sequence[int]) -> int:
    """How many leading tokens ``held`` and ``tokens`` share."""
    n = min(len(held), len(tokens))
    differing = np.flatnonzero(held[:n] != np.asarray(tokens[:n], dtype=held.dtype))
    return int(differing[0]) if differing.size else n
