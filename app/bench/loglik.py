"""Choice log-likelihood mode: each option's log-probability after the prompt, top k picked.

Memory: the engine's Llama keeps ``logits_all=False`` (``logits_all`` would hold n_ctx x vocab
floats, about 2.3 GiB at 4,096 tokens with Qwen's 152k vocabulary). The shared prompt is evaluated
once; its last logits row (one vocab-sized vector) scores each option's first token; then each
option's tokens are decoded in one batch after the prompt with logits requested for every option
position (option length x vocab floats), and the KV cache is rewound to the end of the prompt
before the next option.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp
import numpy as np

from app.engine import Engine, PromptTooLong


@dataclass
class OptionScores:
    logprobs: list[float]  # sum of token log-probabilities per option
    token_counts: list[int]
    prompt_tokens: int
    seconds: float

    def normalized(self) -> list[float]:
        return [lp / max(1, n) for lp, n in zip(self.logprobs, self.token_counts)]


def _log_softmax(row: np.ndarray) -> np.ndarray:
    row = row.astype(np.float64)
    shifted = row - row.max()
    return shifted - np.log(np.exp(shifted).sum())


def option_logprobs(engine: Engine, prompt: str, options: Sequence[str]) -> OptionScores:
    """Sum of log P(option tokens | prompt) for each option, the prompt evaluated once."""
    start = time.perf_counter()
    llm = engine.llama
    prompt_tokens = engine.tokenize(prompt)
    option_tokens = [llm.tokenize(o.encode("utf-8"), add_bos=False, special=False) or [llm.token_eos()]
                     for o in options]
    longest = max((len(t) for t in option_tokens), default=0)
    if len(prompt_tokens) + longest >= engine.n_ctx:
        raise PromptTooLong(len(prompt_tokens) + longest, engine.n_ctx)
    n_vocab = llm.n_vocab()
    n_prompt = len(prompt_tokens)
    results: list[float] = []
    with engine.exclusive(blocking=True):
        try:
            llm.reset()
            llm._ctx.kv_cache_clear()
            llm.eval(prompt_tokens)
            first = _log_softmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1),
                                                       shape=(n_vocab,)).copy())
            for tokens in option_tokens:
                total = float(first[tokens[0]])
                if len(tokens) > 1:
                    batch = llm._batch
                    batch.set_batch(batch=tokens[:-1], n_past=n_prompt, logits_all=True)
                    llm._ctx.decode(batch)
                    for i, token in enumerate(tokens[1:]):
                        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, i),
                                                    shape=(n_vocab,))
                        total += float(_log_softmax(row)[token])
                    llm._ctx.kv_cache_seq_rm(0, n_prompt, -1)  # rewind to the end of the prompt
                results.append(total)
        finally:
            llm.reset()
    return OptionScores(results, [len(t) for t in option_tokens], n_prompt, time.perf_counter() - start)


def pick_top_k(logprobs: Sequence[float], k: int) -> tuple[int, ...]:
    """Indexes of the k most likely options, ties to the lower index, sorted."""
    return tuple(sorted(sorted(range(len(logprobs)), key=lambda i: (-logprobs[i], i))[:k]))
