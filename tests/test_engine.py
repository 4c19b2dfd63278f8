"""The llama.cpp engine on the real demo model."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.demo_model import DEMO_SHA256, DEMO_SIZE
from app.engines.base import EmptyPrompt, EngineBusy, PromptTooLong, Sampling
from app.engines.local import LocalEngine
from app.model_card import ModelFileError, read_model_card

PROMPT = "<|im_start|>user\nList three symptoms of influenza.<|im_end|>\n<|im_start|>assistant\n"


def test_greedy_output_is_identical_across_runs(demo_engine: LocalEngine) -> None:
    first = demo_engine.complete(PROMPT, Sampling.greedy(max_tokens=40)).text
    second = demo_engine.complete(PROMPT, Sampling.greedy(max_tokens=40)).text
    assert first.strip()
    assert first == second


def test_streamed_text_equals_complete_text(demo_engine: LocalEngine) -> None:
    streamed = demo_engine.stream(PROMPT, Sampling.greedy(max_tokens=40))
    pieces = list(streamed)
    assert len(pieces) > 1
    assert "".join(pieces) == streamed.text
    assert streamed.text == demo_engine.complete(PROMPT, Sampling.greedy(max_tokens=40)).text


def test_generation_stats_are_measured(demo_engine: LocalEngine) -> None:
    generation = demo_engine.complete(PROMPT, Sampling.greedy(max_tokens=24))
    stats = generation.stats
    assert stats.prompt_tokens == len(demo_engine.tokenize(PROMPT))
    assert 1 <= stats.completion_tokens <= 24
    assert stats.finish_reason in {"stop", "length"}
    assert stats.first_token_seconds is not None and 0 < stats.first_token_seconds <= stats.seconds
    assert stats.tokens_per_second > 0


def test_completion_tokens_count_each_token_once(demo_engine: LocalEngine) -> None:
    """llama-cpp-python checks its stopping criteria once more when it ends: not a token of the answer."""
    generation = demo_engine.stream("Write one short English sentence about the heart.",
                                    Sampling.greedy(max_tokens=60, stop=("\n",)))
    pieces = list(generation)
    assert generation.stats.finish_reason == "stop" and generation.stats.completion_tokens == len(pieces)


def test_cancel_stops_generation_early(demo_engine: LocalEngine) -> None:
    cancel = threading.Event()
    generation = demo_engine.stream(
        "<|im_start|>user\nWrite a long essay about the history of medicine.<|im_end|>\n<|im_start|>assistant\n",
        Sampling.greedy(max_tokens=400),
        cancel,
    )
    for count, _ in enumerate(generation, start=1):
        if count == 3:
            cancel.set()
    assert generation.stats.finish_reason == "cancelled"
    assert generation.stats.completion_tokens < 10
    assert not demo_engine.busy


def test_second_request_while_busy_gets_a_clear_error(demo_engine: LocalEngine) -> None:
    running = demo_engine.stream(PROMPT, Sampling.greedy(max_tokens=30))
    pieces = iter(running)
    next(pieces)
    assert demo_engine.busy
    with pytest.raises(EngineBusy, match="answering another question"):
        demo_engine.stream(PROMPT, Sampling.greedy(max_tokens=5))
    running.close()
    assert not demo_engine.busy
    assert demo_engine.complete(PROMPT, Sampling.greedy(max_tokens=5)).text


def test_abandoned_generation_frees_the_model(demo_engine: LocalEngine) -> None:
    generation = demo_engine.stream(PROMPT, Sampling.greedy(max_tokens=5))
    assert demo_engine.busy
    del generation
    assert not demo_engine.busy


def test_overlong_prompt_raises_before_generating(demo_engine: LocalEngine) -> None:
    prompt = "発熱と咳があります。" * 1500
    with pytest.raises(PromptTooLong, match="context window is 2048 tokens") as info:
        demo_engine.stream(prompt, Sampling.greedy(max_tokens=5))
    assert info.value.prompt_tokens > 2048
    assert not demo_engine.busy


def test_a_prompt_of_no_tokens_is_refused_before_llama_cpp(demo_engine: LocalEngine) -> None:
    """llama.cpp fails on an empty prompt (an assertion when generating, a NULL pointer when scoring)."""
    assert demo_engine.tokenize("") == []
    for refused in (lambda: demo_engine.stream(""), lambda: demo_engine.complete(""),
                    lambda: demo_engine.option_logprobs("", ["a", "b"])):
        with pytest.raises(EmptyPrompt, match="The prompt is empty: it has no tokens for the model to read"):
            refused()
        assert not demo_engine.busy
    assert demo_engine.complete(PROMPT, Sampling.greedy(max_tokens=4)).text


def test_chat_prompt_uses_the_ggufs_template(demo_engine: LocalEngine) -> None:
    prompt, stops = demo_engine.render_chat(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "質問"}]
    )
    assert prompt == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n質問<|im_end|>\n<|im_start|>assistant\n"
    assert "<|im_end|>" in stops


def test_model_card_values(demo_engine: LocalEngine, demo_model_path: Path) -> None:
    card = demo_engine.card
    assert card.architecture == "qwen2"
    assert card.quantization == "Q4_K_M"
    assert card.size_label == "0.5B"
    assert card.context_length == 32768
    assert card.file_size == DEMO_SIZE
    assert card.sha256 == DEMO_SHA256
    assert card.short_hash == DEMO_SHA256[:12]
    assert card.has_chat_template
    assert card.chat_template is not None and "<|im_start|>" in card.chat_template
    assert card.is_demo
    assert 400_000_000 < card.parameters < 700_000_000
    assert demo_engine.device.startswith("CPU")
    assert read_model_card(demo_model_path) == card


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="Model file not found"):
        LocalEngine.load(tmp_path / "nope.gguf")


def test_non_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    with pytest.raises(ModelFileError, match="not a GGUF model"):
        LocalEngine.load(fake)


def test_truncated_gguf_is_a_clear_error(tmp_path: Path, demo_model_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    with demo_model_path.open("rb") as source:
        broken.write_bytes(source.read(4096))
    with pytest.raises(ModelFileError, match="not a readable GGUF"):
        read_model_card(broken)
