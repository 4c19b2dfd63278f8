"""GGUF export: llama.cpp loads the file, its logits match Hugging Face, the tokenizer and chat
template survive, and tied/untied embeddings, vocab padding and all output types work."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import gguf
import llama_cpp
import numpy as np
import pytest

from model_tools.checkpoint import open_adapter, open_base
from model_tools.gguf_export import export_gguf
from model_tools.verify import conversion_parity, tokenizer_parity
from tests.convert.conftest import make_tiny

if TYPE_CHECKING:
    from llama_cpp.llama_types import (
        ChatCompletionRequestMessage,
        CreateChatCompletionResponse,
        CreateCompletionResponse,
    )

IM_END = 151645


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def test_tiny_export_metadata_tensors_and_logits(tmp_path: Path, tiny_dir: Path, tiny_adapter: Path) -> None:
    base = open_base(tiny_dir)
    out = export_gguf(base, open_adapter(tiny_adapter, base), tmp_path / "tiny-f32.gguf", "f32", progress=False)
    reader = gguf.GGUFReader(out)
    names = {t.name: t for t in reader.tensors}
    assert len(names) == 12 * 2 + 2  # tied embeddings: no output.weight
    assert "output.weight" not in names
    for kind in ("q", "k", "v"):
        assert f"blk.1.attn_{kind}.bias" in names
    assert names["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert field(reader, "general.architecture") == "qwen2"
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "qwen2"
    assert field(reader, "tokenizer.ggml.eos_token_id") == IM_END
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    assert field(reader, "qwen2.rope.freq_base") == pytest.approx(1e6)
    types = field(reader, "tokenizer.ggml.token_type")
    tokens = field(reader, "tokenizer.ggml.tokens")
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert types[tokens.index(special)] == gguf.TokenType.CONTROL
    parity = conversion_parity(tiny_dir, tiny_adapter, out, base.n_params())
    assert parity["reference_dtype"] == "float32"
    assert parity["nmse"] < 1e-6, parity
    assert parity["top1_agreement"] >= 0.99 and parity["passed"]


def test_forgotten_adapter_or_bias_would_show_in_logits(tmp_path: Path, tiny_dir: Path, tiny_adapter: Path) -> None:
    """The parity check can fail: the base model's GGUF does not match the merged reference."""
    base = open_base(tiny_dir)
    out = export_gguf(base, None, tmp_path / "unmerged.gguf", "f32", progress=False)
    parity = conversion_parity(tiny_dir, tiny_adapter, out, base.n_params())
    assert parity["nmse"] > 1e-4 and not parity["passed"]


@pytest.mark.parametrize("out_type, ggml_type", [("f16", "F16"), ("bf16", "BF16")])
def test_half_types_untied_and_padded_vocab(tmp_path: Path, tokenizer_dir: Path, out_type: str, ggml_type: str) -> None:
    model_dir = make_tiny(tmp_path / "padded", tokenizer_dir, vocab_size=152064, tied=False, seed=3)
    base = open_base(model_dir)
    out = export_gguf(base, None, tmp_path / f"m-{out_type}.gguf", out_type, progress=False)
    reader = gguf.GGUFReader(out)
    names = {t.name: t for t in reader.tensors}
    assert len(names) == 12 * 2 + 3
    assert names["output.weight"].tensor_type.name == ggml_type
    assert names["blk.0.attn_q.bias"].tensor_type.name == "F32"
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == 152064 and tokens[-1] == "[PAD152063]" and types[-1] == gguf.TokenType.UNUSED
    llm = llama_cpp.Llama(str(out), n_ctx=128, verbose=False)
    assert llm.n_vocab() == 152064
    # not streamed: one response (llama-cpp-python annotates the union with the stream iterator)
    completion = cast("CreateCompletionResponse", llm.create_completion("Hello", max_tokens=4, temperature=0))
    text = completion["choices"][0]["text"]
    assert isinstance(text, str)
    parity = conversion_parity(model_dir, None, out, base.n_params())
    assert parity["nmse"] < 1e-3, parity


@pytest.mark.slow
def test_real_qwen2_logits_parity(real_dir: Path, real_adapter: Path, real_f16: Path) -> None:
    base = open_base(real_dir)
    parity = conversion_parity(real_dir, real_adapter, real_f16, base.n_params())
    assert parity["passed"], parity
    assert parity["nmse"] < 1e-4 and parity["top1_agreement"] >= 0.95
    assert len(gguf.GGUFReader(real_f16).tensors) == 12 * 24 + 3


@pytest.mark.slow
def test_real_tokenizer_parity_japanese_english(real_dir: Path, real_f16: Path) -> None:
    result = tokenizer_parity(real_dir, real_f16)
    assert result["probes"] >= 8
    assert result["mismatches"] == [], result["mismatches"]
    assert result["eos_token"] == "<|im_end|>"


@pytest.mark.slow
def test_real_chat_template_survives(real_dir: Path, real_f16: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(real_dir)
    llm = llama_cpp.Llama(str(real_f16), n_ctx=512, verbose=False)
    assert llm.metadata["tokenizer.chat_template"] == tokenizer.chat_template
    assert llm.chat_format == "chat_template.default"
    messages = [{"role": "user", "content": "高血圧とは何ですか？ Answer in one sentence."}]
    # llama-cpp-python types messages as per-role TypedDicts and the reply as reply-or-stream
    reply = cast("CreateChatCompletionResponse", llm.create_chat_completion(
        cast("list[ChatCompletionRequestMessage]", messages), max_tokens=48, temperature=0))
    assert reply["choices"][0]["finish_reason"] in ("stop", "length")
    content = reply["choices"][0]["message"]["content"]
    assert content is not None and content.strip()
    prompt = cast(str, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    assert np.array_equal(tokenizer.encode(prompt, add_special_tokens=False),
                          llm.tokenize(prompt.encode(), add_bos=False, special=True))


@pytest.mark.slow
def test_real_parity_with_bfloat16_reference(real_dir: Path, real_adapter: Path, real_f16: Path) -> None:
    """When a float32 reference does not fit in memory (a 7B on 24 GiB) the check runs in bfloat16."""
    parity = conversion_parity(real_dir, real_adapter, real_f16, n_params=10**13)
    assert parity["reference_dtype"] == "bfloat16"
    assert parity["thresholds"]["max_nmse"] == 1e-3
    assert parity["passed"] and parity["nmse"] < 1e-3, parity
