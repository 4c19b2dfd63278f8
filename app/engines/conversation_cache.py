"""Conversations' evaluated prompts (llama.cpp KV cache), kept in memory between their turns.

A follow-up question's prompt starts with the previous prompt and answer, so the local engine
evaluates again only what the KV cache does not hold. When another conversation used the model in
between, :class:`KvState` puts the first one's KV back: one sequence's state
(``llama_state_seq_get_data``: the K and V of each evaluated token, 12 KiB a token for the 0.5B
demo model) and the tokens it holds. ``Llama.save_state`` is not used: it also copies
``Llama.scores``, n_batch x vocab floats (297 MiB with Qwen's 152k vocabulary) that hold nothing
without ``logits_all``, and takes a second to save and two to load.

Same answers as from scratch: llama.cpp's CPU kernels do not compute a token the same way in
every batch. Measured on the demo model (llama-cpp-python 0.3.36, AVX-512), one prompt split into
different batches gives bit-identical logits as long as every token keeps its kind of place: in a
whole group of 4 (counted from the batch's start, itself at a multiple of 4) of a batch of 8 tokens
or more; among the last ``size % 4`` tokens of such a batch; or in the same small batch. A token
that changes kind changes the logits a little (by up to 0.39), enough to change a greedy answer:
reusing the whole previous prompt and answer (whose tokens were generated one at a time), 4 of 5
follow-ups with 96-token answers differed from scratch. So a follow-up reuses only the clean part
of the previous prompt (:func:`clean_end`) and evaluates the rest, the previous answer included,
in batches that give each token its from-scratch kind of place (:func:`reusable`).

:class:`ConversationCache` keeps these states under the conversations' keys, least recently used
first out once they exceed a byte budget; a conversation whose state is gone is evaluated again
(slower, the same answer).
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from dataclasses import dataclass

import llama_cpp
import numpy as np

DEFAULT_KV_CACHE_BYTES = 1 << 30
GROUP = 4  # tokens computed together (a batch's last size % GROUP tokens are computed otherwise)
MIN_BATCH = 8  # smaller batches are computed otherwise
_SEQ = 0  # the sequence the local engine's Llama evaluates into


def reusable(shared: int, clean: int, n_tokens: int, n_batch: int) -> int:
    """How many leading tokens of an ``n_tokens`` prompt to take from the KV cache, so that the
    rest, evaluated from there in batches of ``n_batch``, comes out as from scratch.

    ``shared``: leading tokens the cache and the prompt have in common; ``clean``: of the cache's
    tokens, those evaluated as from scratch (see :func:`clean_end`).
    """
    start = min(shared, clean, n_tokens - MIN_BATCH)
    start -= start % GROUP
    if 0 < n_tokens % n_batch < MIN_BATCH:  # from scratch the prompt ends in a small batch: so must this
        start -= start % n_batch
    elif 0 < (n_tokens - start) % n_batch < MIN_BATCH:  # this would end in a small batch: start earlier
        start -= MIN_BATCH
    return max(start, 0)


def clean_end(n_tokens: int, start: int, n_batch: int) -> int:
    """Of an ``n_tokens`` prompt evaluated from ``start`` (:func:`reusable`) in batches of
    ``n_batch``, how many leading tokens a later prompt may reuse."""
    last = (n_tokens - start - 1) % n_batch + 1  # the last batch's size
    return n_tokens - (last if last < MIN_BATCH else last % GROUP)


@dataclass(frozen=True)
class KvState:
    """The tokens a Llama's KV cache holds, how many of them are clean, and the cache's content."""

    tokens: np.ndarray
    clean: int
    data: bytes

    @property
    def nbytes(self) -> int:
        return len(self.data) + self.tokens.nbytes

    @classmethod
    def capture(cls, llm: llama_cpp.Llama, clean: int) -> KvState:
        """Copy what ``llm`` has evaluated (hold the engine's slot)."""
        ctx = llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, _SEQ)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, _SEQ)
        return cls(tokens=llm.input_ids[: llm.n_tokens].copy(), clean=min(clean, llm.n_tokens),
                   data=ctypes.string_at(buffer, written))

    def restore(self, llm: llama_cpp.Llama) -> bool:
        """Make ``llm`` hold this state again; False (and ``llm`` empty) where llama.cpp refuses it."""
        llm.reset()
        llm._ctx.kv_cache_clear()
        buffer = (ctypes.c_uint8 * len(self.data)).from_buffer_copy(self.data)
        if not llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(self.data), _SEQ):
            llm._ctx.kv_cache_clear()
            return False
        llm.input_ids[: len(self.tokens)] = self.tokens
        llm.n_tokens = len(self.tokens)
        return True


class ConversationCache:
    """:class:`KvState` by conversation key, bounded by their total size (least recently used out first).

    Not locked: the local engine uses it only while it holds its one generation slot.
    """

    def __init__(self, max_bytes: int = DEFAULT_KV_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("the KV cache budget cannot be negative")
        self.max_bytes = max_bytes
        self.total_bytes = 0
        self._states: OrderedDict[str, KvState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: str) -> bool:
        return key in self._states

    def get(self, key: str) -> KvState | None:
        """The conversation's state (now the most recently used), or None where it is not kept."""
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    def put(self, key: str, state: KvState) -> None:
        """Keep ``state`` for ``key`` (replacing its older one), evicting the oldest beyond the budget.

        A state larger than the whole budget is not kept.
        """
        self.discard(key)
        if state.nbytes > self.max_bytes:
            return
        self._states[key] = state
        self.total_bytes += state.nbytes
        while self.total_bytes > self.max_bytes:
            _, evicted = self._states.popitem(last=False)
            self.total_bytes -= evicted.nbytes

    def discard(self, key: str) -> None:
        """Forget the conversation's state, if kept."""
        state = self._states.pop(key, None)
        if state is not None:
            self.total_bytes -= state.nbytes
