"""The shapes of the models that the speed and memory scripts stand in for, declared once.

As keyword arguments of transformers' ``Qwen2Config``: Qwen2.5-0.5B-Instruct (the demo model's architecture)
and Qwen2-7B-Instruct (JMedLLM-v1-7B's base). Speed and memory depend on shapes, not on weight values, so
the scripts build random-weight models of these shapes. Both models share the settings below the shapes.
Nothing is imported, so a bare GPU machine can read it too.
"""

from __future__ import annotations

from typing import Any

QWEN25_05B: dict[str, Any] = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                  num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True)
QWEN2_7B: dict[str, Any] = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False)
CONTEXT_LENGTH = 32768
ROPE_THETA = 1_000_000.0
RMS_NORM_EPS = 1e-6


def kv_width(shape: dict[str, Any]) -> int:
    """The width of the key and value projections: head size times the KV heads."""
    return shape["hidden_size"] // shape["num_attention_heads"] * shape["num_key_value_heads"]


def parameter_count(shape: dict[str, Any], layers: int | None = None) -> int:
    """Parameters of ``shape``, with ``layers`` layers instead of its own when given."""
    h, kv, ff = shape["hidden_size"], kv_width(shape), shape["intermediate_size"]
    per_layer = 2 * h * h + 2 * h * kv + h + 2 * kv + 3 * h * ff + 2 * h  # q,o + k,v + their biases + MLP + norms
    embeddings = shape["vocab_size"] * h * (1 if shape["tie_word_embeddings"] else 2)
    return embeddings + h + (shape["num_hidden_layers"] if layers is None else layers) * per_layer
